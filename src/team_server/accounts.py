"""Accounts on the team's server: MLflow's basic-auth settings, its admin, and `make user`.

The server runs MLflow's basic-auth app. Its settings are `.mlflow-server/auth.ini`, written
before the first start and readable by its owner only: the users' database (`mlflow_auth`, on
the server's own PostgreSQL cluster), the admin's name and a password generated then (MLflow
creates the admin from it when its users' database is empty, so no default password is ever
live), and the key Flask signs its forms with. Every account may read (`default_permission`);
a role grants more, on every experiment and registered model: `editor` EDIT (record runs,
register versions), `reader` READ. Whoever creates an experiment or a registered model MANAGEs
it (MLflow's rule), and moving an alias (`make promote`) needs MANAGE: the server asks it
(`server_auth`, named here as MLflow's `authorization_function`), and so does `make promote`
before any work (see `tracking.access`).

`make user NAME=… ROLE=…` (`server user`) adds an account, as the admin.
"""

import configparser
import os
import re
import secrets
import warnings
from pathlib import Path

from team_server.postgres import HOST, USER, ServerError
from tracking.access import CERT_VARIABLE, TrackingError

AUTH_DATABASE = "mlflow_auth"
ADMIN = "admin"
DEFAULT_PERMISSION = "READ"
ROLES = {"editor": "EDIT", "reader": "READ"}  # role -> its permission on every experiment and model
GRANTED_ON = ("experiment", "registered_model")
WORKSPACE = "default"  # MLflow's one workspace when workspaces are off
AUTHORIZATION_FUNCTION = "team_server.server_auth:signed_in"  # imported by the server
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def new_password() -> str:
    return secrets.token_urlsafe(24)


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file readable by its owner only, made so before the first byte."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.touch(mode=0o600)
    temporary.write_text(text)
    temporary.replace(path)


def write_settings(path: Path, postgres_port: int) -> bool:
    """Write the basic-auth settings (users on `postgres_port`), keeping the admin's password and
    the form key once made; True when they were made now (the first start)."""
    settings = configparser.ConfigParser(interpolation=None)
    settings.read(path)
    first = not settings.has_option("mlflow", "admin_password")
    mlflow = dict(settings["mlflow"]) if settings.has_section("mlflow") else {}
    server = dict(settings["server"]) if settings.has_section("server") else {}
    settings["mlflow"] = {
        "default_permission": DEFAULT_PERMISSION,
        "database_uri": f"postgresql+psycopg://{USER}@{HOST}:{postgres_port}/{AUTH_DATABASE}",
        "admin_username": mlflow.get("admin_username", ADMIN),
        "admin_password": mlflow.get("admin_password") or new_password(),
        "authorization_function": AUTHORIZATION_FUNCTION}
    settings["server"] = {"flask_secret_key": server.get("flask_secret_key") or secrets.token_hex(32)}
    lines = ["# The team server's accounts (MLflow basic auth): readable by its owner only.\n"]
    for section in settings.sections():
        lines += [f"[{section}]\n", *(f"{k} = {v}\n" for k, v in settings[section].items()), "\n"]
    write_private(path, "".join(lines))
    return first


def read_settings(path: Path) -> configparser.ConfigParser:
    settings = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as text:
            settings.read_file(text)
        settings["mlflow"]["admin_password"], settings["server"]["flask_secret_key"]  # noqa: B018
    except PermissionError:
        raise ServerError(f"only the server's admin may do this: {path} is not readable by you") from None
    except (OSError, KeyError, configparser.Error) as error:
        raise ServerError(f"{path}: no server's accounts there ({type(error).__name__}: {error}): "
                          f"start the server first (`make server`)") from None
    return settings


def admin(path: Path) -> tuple[str, str]:
    """(name, password) of the server's admin."""
    section = read_settings(path)["mlflow"]
    return section["admin_username"], section["admin_password"]


def exports(name: str, password: str) -> str:
    return f"export MLFLOW_TRACKING_USERNAME={name}\nexport MLFLOW_TRACKING_PASSWORD={password}"


def role_id(client, role: str) -> int:
    """The id of the role, made with its grants if missing."""
    for existing in client.list_roles(WORKSPACE):
        if existing.name == role:
            return existing.id
    made = client.create_role(WORKSPACE, role, f"{ROLES[role]} on every experiment and registered model")
    for resource_type in GRANTED_ON:
        client.add_role_permission(made.id, resource_type, "*", ROLES[role])
    return made.id


def add_user(url: str, admin_login: tuple[str, str], name: str, role: str) -> str:
    """Create the account `name` with `role` on the server at `url`, as its admin; its password."""
    if not NAME_PATTERN.fullmatch(name):
        raise ServerError(f"NAME={name!r}: a user name is 1-64 letters, digits, '.', '_', '@' or '-'")
    if role not in ROLES:
        raise ServerError(f"ROLE={role!r}: choose one of {', '.join(ROLES)}")
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = admin_login
    from mlflow.exceptions import MlflowException

    with warnings.catch_warnings():  # the client loads the server's modules, which warn of their own
        warnings.simplefilter("ignore")
        from mlflow.server.auth.client import AuthServiceClient

    client, password = AuthServiceClient(url), new_password()
    try:
        role_number = role_id(client, role)
        client.create_user(name, password)
        client.assign_role(name, role_number)
    except MlflowException as error:
        if error.error_code == "RESOURCE_ALREADY_EXISTS":
            raise ServerError(f"user {name!r} exists already on {url}") from None
        raise ServerError(f"MLflow server {url}: {str(error.message).splitlines()[0][:300]}") from None
    return password


def how_to_use(settings: Path, first: bool, certificate: Path | None, remote_url: str | None) -> str:
    """What `make server` says after starting: the admin (its password the first time), adding
    accounts, and, over TLS, the certificate clients must trust."""
    name, password = admin(settings)
    lines = ([f"The admin's password was generated now; it is kept in {settings} (readable by you only). "
              "To act as the admin (make user, the UI's account pages):", exports(name, password)] if first
             else [f"The admin is {name!r}, its password in {settings} (admin_password)."])
    lines.append("Add an account for each teammate: make user NAME=alice ROLE=editor (or ROLE=reader)")
    if remote_url:
        lines.append(f"From other machines: MLFLOW_TRACKING_URI={remote_url}, with {certificate} copied "
                     f"there and {CERT_VARIABLE} set to it")
    if certificate:
        lines.append(f"export {CERT_VARIABLE}={certificate}")
    return "\n".join(lines)


def make_experiments(settings: Path, url: str, certificate: Path | None) -> None:
    """Make the project's experiments (each dataset's, and its sweeps') as the admin, so that whoever
    records into one first does not manage it (MLflow lets any account create an experiment, and its
    creator manages it)."""
    from regression.params import dataset_names, read_yaml
    from tracking.naming import sweeps_of
    from tracking.store import open_experiments

    name, password = admin(settings)
    os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
    os.environ.update(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_USERNAME=name, MLFLOW_TRACKING_PASSWORD=password)
    if certificate:
        os.environ[CERT_VARIABLE] = str(certificate)
    try:
        datasets = dataset_names(read_yaml(Path(__file__).resolve().parents[2] / "params.yaml"))
        open_experiments([*datasets, *map(sweeps_of, datasets)])
    except TrackingError as error:
        raise ServerError(f"the server is up, but the project's experiments could not be made: {error}") from None
