"""A private PostgreSQL cluster and an `mlflow server` on it: session fixtures for any test file.

Import a fixture together with those it uses, since pytest looks them up by name in the test's
module: `from postgres import mlflow_pg_server, postgres_binaries, postgres_server`. Without
PostgreSQL's binaries they skip, naming the package to install; with the environment variable
`CI` set they fail instead, so CI never skips them silently. The cluster is made and run by
`team_server.server`'s own functions, as the `postgres` user when the tests run as root.
"""

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from projects import BIN, environment, free_port
from team_server.server import (
    HOST,
    SERVER_SETTINGS,
    ServerError,
    create_database,
    find_postgres,
    healthy,
    init_cluster,
    start_postgres,
    stop_postgres,
    stop_process,
)

USER, PASSWORD, DATABASE = "lesson", "lesson-password", "lesson"


@pytest.fixture(scope="session")
def postgres_binaries() -> Path:
    """The folder of initdb and pg_ctl; the test skips (fails under CI) if PostgreSQL is not installed."""
    try:
        return find_postgres()
    except ServerError as error:
        if os.environ.get("CI"):
            pytest.fail(f"{error} (CI must run the PostgreSQL tests: install it before `make test`)")
        pytest.skip(str(error))


def folder_postgres_can_reach() -> Path:
    """A new temporary folder the `postgres` user can enter: pytest's own are private to their owner."""
    folder = Path(tempfile.mkdtemp(prefix="regression-pg-"))
    folder.chmod(0o755)
    return folder


@pytest.fixture
def postgres_tmp_path():
    """A temporary folder for a cluster, deleted afterwards."""
    folder = folder_postgres_can_reach()
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(scope="session")
def postgres_server(postgres_binaries):
    """A cluster of its own on a free port of 127.0.0.1, with a user and database; yields their
    SQLAlchemy URI. The cluster is stopped and deleted afterwards."""
    folder = folder_postgres_can_reach()
    data, superuser_password, port = folder / "data", secrets.token_urlsafe(), free_port()
    try:
        init_cluster(postgres_binaries, data, superuser_password)
        start_postgres(postgres_binaries, data, port, folder / "postgres.log")
        create_database(port, superuser_password, USER, PASSWORD, DATABASE)
        yield f"postgresql+psycopg://{USER}:{PASSWORD}@{HOST}:{port}/{DATABASE}"
    finally:
        stop_postgres(data)
        shutil.rmtree(folder)


@pytest.fixture(scope="session")
def mlflow_pg_server(postgres_server, tmp_path_factory):
    """`mlflow server` on `postgres_server`, on a free port of 127.0.0.1, serving artifacts from a
    temporary folder (proxied: clients send and fetch them through the server); yields its URL."""
    folder = tmp_path_factory.mktemp("mlflow-pg-server")
    port = free_port()
    url = f"http://{HOST}:{port}"
    with open(folder / "server.log", "wb") as log:
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", HOST, "--port", str(port), "--workers", "2",
             "--backend-store-uri", postgres_server, "--artifacts-destination", str(folder / "artifacts")],
            env=environment(**SERVER_SETTINGS), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not healthy(url, server):
            pytest.fail(f"mlflow server on PostgreSQL did not answer at {url}/health: "
                        f"see {folder / 'server.log'}")
        yield url
    finally:
        stop_process(server.pid)
        server.wait(timeout=10)
