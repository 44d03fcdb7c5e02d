"""A tracking server asked over plain HTTP, before any work: is it up, is its certificate trusted, may this account record.

No MLflow here: a stage asks this before it trains, and imports MLflow only once training is done
(`record`). The account is MLflow's: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, else
`~/.mlflow/credentials`; the server's certificate is trusted through MLflow's own
MLFLOW_TRACKING_SERVER_CERT_PATH. A server without accounts, or no account given, is asked
nothing more than its health: its own answer (401, 403) then stands.
"""

import base64
import configparser
import errno
import getpass
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from regression import PipelineError

CERT_VARIABLE = "MLFLOW_TRACKING_SERVER_CERT_PATH"  # MLflow's: the CA bundle its client trusts
LEVELS = ("READ", "USE", "EDIT", "MANAGE")  # MLflow's permissions, each granting what those before it do
REFUSED = ("it refused the account (401: no or a wrong MLFLOW_TRACKING_USERNAME or MLFLOW_TRACKING_PASSWORD; "
           "the server's admin makes accounts with `make user`)")


class TrackingError(PipelineError):
    """The tracking store cannot be reached, opened or written."""


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def credentials() -> tuple[str | None, str | None]:
    """(username, password) as MLflow's client finds them: its variables, else ~/.mlflow/credentials."""
    name, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if name is None:
        saved = configparser.ConfigParser()
        saved.read(Path.home() / ".mlflow" / "credentials")
        name = saved.get("mlflow", "mlflow_tracking_username", fallback=None)
        password = saved.get("mlflow", "mlflow_tracking_password", fallback=None)
    return name, password


def account() -> str:
    """Who records: the server account, else the user of this machine."""
    return credentials()[0] or getpass.getuser()


def client_context(url: str) -> ssl.SSLContext | None:
    """The context trusting MLFLOW_TRACKING_SERVER_CERT_PATH (if set) for an https URL."""
    if not url.startswith("https://"):
        return None
    given = os.environ.get(CERT_VARIABLE) or None
    try:
        return ssl.create_default_context(cafile=given)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"{CERT_VARIABLE}={given}: not a readable PEM certificate "
                         f"({getattr(error, 'reason', None) or error})") from None


def is_certificate_error(error: BaseException) -> bool:
    """Whether a failed request failed on the server's certificate (urllib's or requests')."""
    seen, depth = error, 0
    while isinstance(seen, BaseException) and depth < 10:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen, depth = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__, depth + 1
    return False


def untrusted(url: str) -> str:
    """What to do when `url`'s certificate is not trusted: name the variable."""
    given = os.environ.get(CERT_VARIABLE)
    now = f"{CERT_VARIABLE}={given} does not verify it" if given else f"{CERT_VARIABLE} is not set"
    return (f"MLflow tracking server {url}: its TLS certificate is not trusted ({now}): set "
            f"{CERT_VARIABLE} to the server's certificate (.mlflow-server/tls/cert.pem on its host)")


def ask_health(url: str, timeout: float, context=None) -> None:
    context = context or client_context(url)
    with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout, context=context) as response:
        response.read()


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, naming the server, when nothing healthy answers at `uri`."""
    try:
        ask_health(uri, timeout)
    except (OSError, ValueError) as error:
        if is_certificate_error(error):
            raise TrackingError(untrusted(uri)) from None
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"MLflow tracking server {uri} does not answer ({reason}): start it (`make server`) or "
            f"unset MLFLOW_TRACKING_URI to record into the project's mlflow.db") from None


def ask(uri: str, endpoint: str, query: dict) -> dict | None:
    """The JSON answer of a GET to the server as this account; None for 404 (no such thing, or no
    such endpoint: a server without accounts)."""
    name, password = credentials()
    url = f"{uri.rstrip('/')}{endpoint}?{urllib.parse.urlencode(query)}"
    basic = base64.b64encode(f"{name}:{password or ''}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {basic}"} if name else {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=client_context(uri)) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        why = REFUSED if error.code == 401 else f"{error.code} {error.reason}"
        raise TrackingError(f"MLflow tracking server {uri}: {why}") from None
    except (OSError, ValueError) as error:
        if is_certificate_error(error):
            raise TrackingError(untrusted(uri)) from None
        raise TrackingError(f"MLflow tracking server {uri}: {getattr(error, 'reason', error)}") from None


def held(uri: str, resource_type: str, resource_id: str) -> str | None:
    """The permission this account holds on a resource of the server, or None where no account is asked."""
    name = credentials()[0]
    if not is_server(uri) or not name:
        return None
    answer = ask(uri, "/api/3.0/mlflow/users/permissions/get",
                 {"username": name, "resource_type": resource_type, "resource_id": resource_id})
    if answer is None:
        return None  # a server without accounts
    permission = answer["permission"]
    if permission != LEVELS[-1] and (ask(uri, "/api/2.0/mlflow/users/current", {}) or {}).get(
            "user", {}).get("is_admin"):
        permission = LEVELS[-1]  # an admin may do anything, whatever its grants say
    return permission


def shortfall(uri: str, permission: str, resource_type: str, resource_id: str, label: str, doing: str) -> str | None:
    """Why this account may not do `doing` (`label` names the resource to people), or None if it may."""
    holding = held(uri, resource_type, resource_id)
    if holding is None or (holding in LEVELS and LEVELS.index(holding) >= LEVELS.index(permission)):
        return None
    return (f"MLflow tracking server {uri}: account '{credentials()[0]}' holds {holding} on {label}; "
            f"{doing} needs {permission}")


def require(uri: str, permission: str, resource_type: str, resource_id: str, label: str, doing: str) -> None:
    """Fail, naming `permission`, unless this account holds it on the resource."""
    if why := shortfall(uri, permission, resource_type, resource_id, label, doing):
        raise TrackingError(f"{why} (ask the server's admin)")


def check_recording(uri: str, experiment: str) -> None:
    """Before a stage trains: a server at `uri` answers, trusts this account, and lets it record
    runs (EDIT) in `experiment` if that exists (the server makes the project's experiments)."""
    if not is_server(uri):
        return
    check_server(uri)
    found = ask(uri, "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": experiment})
    if found is not None and credentials()[0]:
        require(uri, "EDIT", "experiment", found["experiment"]["experiment_id"], f"experiment '{experiment}'",
                "recording runs")


def one_line(error: BaseException) -> str:
    """The first line of an error's message, without SQLAlchemy's background link."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def refusal(error: BaseException) -> str:
    """One line for a server's refusal: an account it does not know (401) says which settings to fix."""
    return REFUSED if getattr(error, "get_http_status_code", lambda: None)() == 401 else one_line(error)


def disk_full(error: BaseException, uri: str) -> str | None:
    """Where a full disk is behind `error` (MLflow wraps what it met), else None."""
    while error is not None:
        if "database or disk is full" in str(error):  # sqlite's own words
            return uri.removeprefix("sqlite:///")
        # shutil.copytree gathers its files' errors into one shutil.Error: [(source, destination, why), ...]
        if isinstance(error, OSError) and (error.errno == errno.ENOSPC or "No space left on device" in str(error)):
            copied = error.args[0] if error.args and isinstance(error.args[0], list) else []
            path = error.filename2 or error.filename or (copied[0][1] if copied and len(copied[0]) == 3 else None)
            return path or f"the temporary folder ({tempfile.gettempdir()}) or the store's artifacts folder"
        error = error.__cause__ or error.__context__
    return None


def as_tracking_error(error: BaseException, run_id: str | None, uri: str) -> BaseException:
    """MLflow's errors, and a full disk, as one line naming the run and the store."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException | OSError) and not isinstance(error, TrackingError):
        what = (f"MLflow run {run_id}" if run_id else "MLflow") + (f" in {uri}" if is_server(uri) or not run_id else "")
        if full := disk_full(error, uri):
            return TrackingError(f"{what}: no space left on the device of {full}; free space there and run "
                                 "again (the outputs are still the last good run's)")
        return TrackingError(f"{what}: {one_line(error)}")
    return error
