"""What the server lets this account do, asked before any work: record runs, move an alias.

On a server with accounts (MLflow basic auth), an account that may only read would be refused
at its first write, a run already made; asked first, a stage fails at once, in one line naming
the permission it lacks, before it makes a run or an output. Moving `champion` (`make promote`)
needs MANAGE on the registered model, the level MLflow gives its creator (MLflow's own server
lets EDIT move an alias: this project asks more of its own command). The account is MLflow's:
MLFLOW_TRACKING_USERNAME, or `~/.mlflow/credentials`. A server without accounts, or no account
given, is not asked: the server's own answer (401, 403) then stands.
"""

from regression.tracking.naming import experiment_name
from regression.tracking.store import TrackingError, refusal, tracking_uri

PERMISSIONS_ENDPOINT = "/api/3.0/mlflow/users/permissions/get"
LEVELS = ("READ", "USE", "EDIT", "MANAGE")  # MLflow's permissions, each granting what those before it do


def account() -> str:
    """Who records: the server account (MLflow's credentials), else the user of this machine."""
    import getpass

    from mlflow.utils.credentials import read_mlflow_creds

    return read_mlflow_creds().username or getpass.getuser()


def require(permission: str, resource_type: str, resource_id: str, label: str, doing: str) -> None:
    """Fail, naming `permission`, unless this account holds it on the resource (`label` names it to
    people, e.g. "experiment 'regression-lesson/synthetic'"; `doing` says what needs it)."""
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds, read_mlflow_creds
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    name = read_mlflow_creds().username
    if not name:
        return
    query = {"username": name, "resource_type": resource_type, "resource_id": resource_id}
    try:
        response = http_request(get_default_host_creds(uri), PERMISSIONS_ENDPOINT, "GET", params=query,
                                max_retries=0, timeout=10)
        if response.status_code == 404:
            return  # a server without accounts
        held = verify_rest_response(response, PERMISSIONS_ENDPOINT).json()["permission"]
    except MlflowException as error:
        raise TrackingError(f"MLflow tracking server {uri}: {refusal(error)}") from None
    if held not in LEVELS or LEVELS.index(held) < LEVELS.index(permission):  # NO_PERMISSIONS, DENY
        raise TrackingError(f"MLflow tracking server {uri}: account '{name}' holds {held} on {label}; "
                            f"{doing} needs {permission} (ask the server's admin)")


def require_recording(experiment_id: str, dataset: str) -> None:
    """Fail unless this account may record runs in the dataset's experiment (EDIT)."""
    require("EDIT", "experiment", experiment_id, f"experiment '{experiment_name(dataset)}'", "recording runs")
