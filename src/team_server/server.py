"""The team's MLflow tracking server: `mlflow server` with accounts, on a private PostgreSQL cluster.

`python -m team_server.server start|stop|status|user` (`make server`, `make server-stop`, `make user`).
Everything lives in `.mlflow-server/` at the project root: the cluster (`postgres/`, made by
initdb on the first start, with the user `mlflow`, its database `mlflow` and the users' database
`mlflow_auth`), the artifacts (`artifacts/`, served through the server under the same
permissions), `logs/`, the server's pid file, and the secrets, readable by their owner only:
`pgpass` (the database passwords, read by libpq, so none appears on a command line),
`auth.ini` (the accounts' settings and the admin's password, see `accounts`) and `tls/key.pem`.
PostgreSQL listens on 127.0.0.1 only; MLflow too, over plain HTTP, unless given another address
(`--host 0.0.0.0`): then over HTTPS only (see `tls`). MLflow's security middleware, which runs
on its default uvicorn server only, refuses a Host header that is not the server's own (DNS
rebinding) and cross-origin writes from any origin but the server's own (and localhost's, which
MLflow always lets through).
"""

import argparse
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import psutil

from team_server.accounts import (
    AUTH_DATABASE,
    add_user,
    admin,
    exports,
    how_to_use,
    make_experiments,
    read_settings,
    write_settings,
)
from team_server.postgres import (
    DATABASE,
    HOST,
    POSTGRES_BINARIES,
    SUPERUSER,
    USER,
    ServerError,
    check_owner_can_enter,
    check_port_free,
    create_database,
    find_postgres,
    init_cluster,
    postgres_running,
    start_postgres,
    stop_postgres,
    stop_process,
    what_went_wrong,
)
from team_server.tls import check_given, host_names, make_certificate
from tracking.access import CERT_VARIABLE, ask_health

START_SECONDS = 120  # the first start creates MLflow's tables
GRACE_SECONDS = 5  # how long a stop waits for requests in flight
# MLflow's job runner serves GenAI features (LLM judges, prompt optimisation) that this project
# does not use, at the cost of 8 processes and ~650 MB.
SERVER_SETTINGS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def healthy(url: str, process: subprocess.Popen, seconds: float = START_SECONDS, tls: bool = False) -> bool:
    """Whether `url`/health answers before the process ends or `seconds` pass. Over TLS, this
    process's own server on 127.0.0.1 answers, whatever names its certificate gives."""
    deadline = time.monotonic() + seconds
    context = ssl._create_unverified_context() if tls else None  # noqa: S323 - our own child, over loopback
    while process.poll() is None and time.monotonic() < deadline:
        try:
            ask_health(url, timeout=2, context=context)
            return True
        except (OSError, ValueError):
            time.sleep(0.3)
    return False


class Server:
    """One project's server, kept in `<root>/.mlflow-server/`."""

    def __init__(self, root: Path):
        self.state = root.resolve() / ".mlflow-server"
        self.data, self.logs, self.artifacts = (self.state / n for n in ("postgres", "logs", "artifacts"))
        self.pid_file, self.pgpass = self.state / "mlflow.pid", self.state / "pgpass"
        self.auth_settings, self.tls = self.state / "auth.ini", self.state / "tls"

    def command(self) -> list[str] | None:
        """The command line of the `mlflow server` the pid file names, None if it does not run."""
        try:
            command = psutil.Process(int(self.pid_file.read_text())).cmdline()
            return command if "server" in command and "--port" in command else None
        except (OSError, ValueError, psutil.Error):
            return None

    def mlflow_running(self) -> tuple[int, str] | None:
        """(pid, URL on this host) of the running `mlflow server`, None if it does not run."""
        if (command := self.command()) is None:
            return None
        scheme = "https" if self.certificate_in_use() else "http"
        return int(self.pid_file.read_text()), f"{scheme}://{HOST}:{command[command.index('--port') + 1]}"

    def certificate_in_use(self) -> Path | None:
        """The certificate the running server serves HTTPS with, None for plain HTTP."""
        options = (self.command() or [""])[-1].split()  # --uvicorn-opts' value comes last
        return Path(options[options.index("--ssl-certfile") + 1]) if "--ssl-certfile" in options else None

    def passwords(self) -> dict[str, str]:
        """{user: password} from pgpass, which the first call writes."""
        if not self.pgpass.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            self.pgpass.touch(mode=0o600)
            self.pgpass.write_text("".join(f"{HOST}:*:*:{user}:{secrets.token_urlsafe(24)}\n"
                                           for user in (SUPERUSER, USER)))
        return dict(line.split(":")[3:5] for line in self.pgpass.read_text().splitlines())

    def start(self, port: int, postgres_port: int, search: str, host: str = HOST,
              given: tuple[Path, Path] | None = None) -> None:
        """Start PostgreSQL and MLflow with accounts; over HTTPS with `given` (certificate, key) or,
        on any address but 127.0.0.1, a certificate made at the first start."""
        if running := self.mlflow_running():
            print(f"MLflow server already running (pid {running[0]}) at {running[1]}\n"
                  f"export MLFLOW_TRACKING_URI={running[1]}")
            return
        binaries = find_postgres(search)
        check_owner_can_enter(self.state.parent)
        passwords = self.passwords()
        check_port_free(port, "the MLflow server's", "PORT", host)
        certificate = check_given(given) if given else make_certificate(self.tls) if host != HOST else None
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)  # what an interrupted first start left
            init_cluster(binaries, self.data, passwords[SUPERUSER])
        if not postgres_running(self.data):
            start_postgres(binaries, self.data, postgres_port, self.logs / "postgres.log")
        postgres_port = postgres_running(self.data)[1]
        for database in (DATABASE, AUTH_DATABASE):
            create_database(postgres_port, passwords[SUPERUSER], USER, passwords[USER], database)
        first = write_settings(self.auth_settings, postgres_port)  # before MLflow reads it
        scheme = "https" if certificate else "http"
        url, log = f"{scheme}://{HOST}:{port}", self.logs / "mlflow.log"
        names = [HOST, "localhost"] + ([n for found in host_names() for n in found] if host != HOST else [])
        names = list(dict.fromkeys(names))
        self.logs.mkdir(exist_ok=True)
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", host,
                 "--port", str(port),
                 "--backend-store-uri", f"postgresql+psycopg://{USER}@{HOST}:{postgres_port}/{DATABASE}",
                 "--artifacts-destination", str(self.artifacts),
                 "--allowed-hosts", ",".join(f"{n}:{port}" for n in names),
                 "--cors-allowed-origins", ",".join(f"{scheme}://{n}:{port}" for n in names),
                 # A client's open connection would hold a stop for 30 s, until it is killed: give
                 # requests in flight GRACE_SECONDS.
                 "--uvicorn-opts", f"--timeout-graceful-shutdown {GRACE_SECONDS}"
                 + (f" --ssl-keyfile {certificate[1]} --ssl-certfile {certificate[0]}"
                    if certificate else "")],
                cwd=self.state, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                env=self.server_environment(), start_new_session=True)
        self.pid_file.write_text(f"{process.pid}\n")
        if not healthy(url, process, tls=certificate is not None):
            self.stop(quiet=True)
            raise ServerError(f"mlflow server did not start: {what_went_wrong(log.read_text())} "
                              f"(see {log})")
        make_experiments(self.auth_settings, url, certificate and certificate[0])
        print(f"MLflow server up (pid {process.pid}) at {url}, on PostgreSQL at {HOST}:{postgres_port}, "
              f"with accounts (MLflow basic auth)")
        print(how_to_use(self.auth_settings, first, certificate and certificate[0],
                         f"{scheme}://{socket.gethostname()}:{port}" if host != HOST else None))
        print(f"export MLFLOW_TRACKING_URI={url}")

    def server_environment(self) -> dict[str, str]:
        """The server's environment: its secrets come from files only its owner may read; the
        folder holding this package (`src`) on its path, for its sign-in check (`server_auth`,
        which the settings name as `team_server.server_auth:signed_in`)."""
        settings = read_settings(self.auth_settings)
        package_root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        return os.environ | {"PYTHONPATH": path, "PGPASSFILE": str(self.pgpass),
                             "MLFLOW_AUTH_CONFIG_PATH": str(self.auth_settings),
                             "MLFLOW_FLASK_SERVER_SECRET_KEY": settings["server"]["flask_secret_key"],
                             **SERVER_SETTINGS}

    def add_user(self, name: str, role: str) -> None:
        """`make user`: an account made by the admin (who alone may read auth.ini); its password, once."""
        login = admin(self.auth_settings)
        if (running := self.mlflow_running()) is None:
            raise ServerError("the MLflow server is not running: start it first (`make server`)")
        if certificate := self.certificate_in_use():
            os.environ[CERT_VARIABLE] = str(certificate)
        password = add_user(running[1], login, name, role)
        print(f"# {name} ({role}) on {running[1]}; shown once: give these two lines to {name}")
        print(exports(name, password))

    def stop(self, quiet: bool = False) -> None:
        if running := self.mlflow_running():
            stop_process(running[0])
        self.pid_file.unlink(missing_ok=True)
        postgres = stop_postgres(self.data)
        if not quiet:
            print(f"MLflow server (pid {running[0]}) stopped" if running else "MLflow server was not running")
            print(f"PostgreSQL (pid {postgres}) stopped" if postgres else "PostgreSQL was not running")

    def status(self) -> bool:
        """Say what runs; whether the MLflow server does."""
        running, postgres = self.mlflow_running(), postgres_running(self.data)
        print(f"MLflow server: running (pid {running[0]}) at {running[1]}" if running
              else "MLflow server: not running")
        print(f"PostgreSQL: running (pid {postgres[0]}) at {HOST}:{postgres[1]}" if postgres
              else "PostgreSQL: not running")
        return running is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status", "user"])
    parser.add_argument("name", nargs="?", help="user: the account's name")
    parser.add_argument("role", nargs="?", help="user: what the account may do (editor or reader)")
    parser.add_argument("--port", type=int, default=5001, help="the MLflow server's port (default 5001)")
    parser.add_argument("--postgres-port", type=int, default=5433, help="PostgreSQL's port (default 5433)")
    parser.add_argument("--postgres-bin", default=POSTGRES_BINARIES, help="where to find initdb and pg_ctl")
    parser.add_argument("--host", default=HOST, help=f"the MLflow server's address (default {HOST}; any "
                        "other, e.g. 0.0.0.0, serves HTTPS only)")
    parser.add_argument("--cert", type=Path, help="serve HTTPS with this certificate (PEM) ...")
    parser.add_argument("--key", type=Path, help="... and its private key (PEM, mode 600)")
    args = parser.parse_args()
    if (args.cert is None) != (args.key is None):
        parser.error("give both --cert and --key, or neither")
    server = Server(Path.cwd())
    try:
        if args.action == "start":
            server.start(args.port, args.postgres_port, args.postgres_bin, args.host,
                         (args.cert, args.key) if args.cert else None)
        elif args.action == "user":
            server.add_user(args.name or "", args.role or "")
        elif args.action == "stop":
            server.stop()
        elif not server.status():
            sys.exit(3)  # "not running", as `pg_ctl status` says it
    except ServerError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
