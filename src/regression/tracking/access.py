"""What the server lets this account do, asked before any work: record runs, move an alias.

On a server with accounts (MLflow basic auth), an account that may only read would be refused
at its first write, a run already made; asked first, a stage fails at once, in one line naming
the permission it lacks, before it makes a run or an output. Moving `champion` (`make promote`)
needs MANAGE on the registered model, the level MLflow gives its creator (the server refuses it
to others too, see `server_auth`); a sweep crowns its refit only if its account may. The
account is MLflow's: MLFLOW_TRACKING_USERNAME, or `~/.mlflow/credentials`. A server without
accounts, or no account given, is not asked: the server's own answer (401, 403) then stands.
"""

from regression.tracking.naming import experiment_name
from regression.tracking.store import TrackingError, refusal, tracking_uri

PERMISSIONS_ENDPOINT = "/api/3.0/mlflow/users/permissions/get"
CURRENT_USER_ENDPOINT = "/api/2.0/mlflow/users/current"
LEVELS = ("READ", "USE", "EDIT", "MANAGE")  # MLflow's permissions, each granting what those before it do


def account() -> str:
    """Who records: the server account (MLflow's credentials), else the user of this machine."""
    import getpass

    from mlflow.utils.credentials import read_mlflow_creds

    return read_mlflow_creds().username or getpass.getuser()


def held(resource_type: str, resource_id: str) -> tuple[str, str, str] | None:
    """(server, account, the permission it holds on the resource), or None where no account is
    asked: a local store, a server without accounts, no account given."""
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds, read_mlflow_creds
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    name = read_mlflow_creds().username
    if not name:
        return None

    def ask(endpoint: str, query: dict | None = None) -> dict | None:
        response = http_request(get_default_host_creds(uri), endpoint, "GET", params=query, max_retries=0,
                                timeout=10)
        return None if response.status_code == 404 else verify_rest_response(response, endpoint).json()

    try:
        answer = ask(PERMISSIONS_ENDPOINT, {"username": name, "resource_type": resource_type,
                                            "resource_id": resource_id})
        if answer is None:
            return None  # a server without accounts
        permission = answer["permission"]
        if permission != LEVELS[-1] and (ask(CURRENT_USER_ENDPOINT) or {}).get("user", {}).get("is_admin"):
            permission = LEVELS[-1]  # an admin may do anything, whatever its grants say
    except MlflowException as error:
        raise TrackingError(f"MLflow tracking server {uri}: {refusal(error)}") from None
    return uri, name, permission


def grants(holding: str, permission: str) -> bool:
    """Whether holding one permission allows what another does (NO_PERMISSIONS, DENY allow nothing)."""
    return holding in LEVELS and LEVELS.index(holding) >= LEVELS.index(permission)


def shortfall(permission: str, resource_type: str, resource_id: str, label: str, doing: str) -> str | None:
    """Why this account may not do `doing` (`label` names the resource to people, e.g.
    "experiment 'regression-lesson/synthetic'"), or None if it may."""
    answer = held(resource_type, resource_id)
    if answer is None or grants(answer[2], permission):
        return None
    uri, name, holding = answer
    return (f"MLflow tracking server {uri}: account '{name}' holds {holding} on {label}; "
            f"{doing} needs {permission}")


def require(permission: str, resource_type: str, resource_id: str, label: str, doing: str) -> None:
    """Fail, naming `permission`, unless this account holds it on the resource."""
    if why := shortfall(permission, resource_type, resource_id, label, doing):
        raise TrackingError(f"{why} (ask the server's admin)")


def require_recording(experiment_id: str, dataset: str) -> None:
    """Fail unless this account may record runs in the dataset's experiment (EDIT)."""
    require("EDIT", "experiment", experiment_id, f"experiment '{experiment_name(dataset)}'", "recording runs")
