"""The team's MLflow tracking server: `mlflow server` on a private PostgreSQL cluster in the project.

`python -m regression.tracking.server start|stop|status` (`make server`, `make server-stop`).
Everything lives in `.mlflow-server/` at the project root: the cluster (`postgres/`, made by
initdb on the first start, with the user and database `mlflow`), the artifacts (`artifacts/`,
served through the server), `logs/`, the server's pid file, and `pgpass`: the passwords,
readable by their owner only and read by libpq, so none appears on a command line. Both listen
on 127.0.0.1 only.
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from regression.tracking.postgres import (
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
from regression.tracking.store import ask_health

START_SECONDS = 120  # the first start creates MLflow's tables
# MLflow's job runner serves GenAI features (LLM judges, prompt optimisation) that this project
# does not use, at the cost of 8 processes and ~650 MB.
SERVER_SETTINGS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def healthy(url: str, process: subprocess.Popen, seconds: float = START_SECONDS) -> bool:
    """Whether `url`/health answers before the process ends or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        try:
            ask_health(url, timeout=2)
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

    def mlflow_running(self) -> tuple[int, str] | None:
        """(pid, URL) of the `mlflow server` the pid file names, None if it does not run."""
        try:
            pid = int(self.pid_file.read_text())
            command = psutil.Process(pid).cmdline()
            return pid, f"http://{HOST}:{command[command.index('--port') + 1]}"
        except (OSError, ValueError, psutil.Error):
            return None

    def passwords(self) -> dict[str, str]:
        """{user: password} from pgpass, which the first call writes."""
        if not self.pgpass.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            self.pgpass.touch(mode=0o600)
            self.pgpass.write_text("".join(f"{HOST}:*:*:{user}:{secrets.token_urlsafe(24)}\n"
                                           for user in (SUPERUSER, USER)))
        return dict(line.split(":")[3:5] for line in self.pgpass.read_text().splitlines())

    def start(self, port: int, postgres_port: int, search: str) -> None:
        if running := self.mlflow_running():
            print(f"MLflow server already running (pid {running[0]}) at {running[1]}\n"
                  f"export MLFLOW_TRACKING_URI={running[1]}")
            return
        binaries = find_postgres(search)
        check_owner_can_enter(self.state.parent)
        passwords = self.passwords()
        check_port_free(port, "the MLflow server's", "PORT")
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)  # what an interrupted first start left
            init_cluster(binaries, self.data, passwords[SUPERUSER])
        if not postgres_running(self.data):
            start_postgres(binaries, self.data, postgres_port, self.logs / "postgres.log")
        postgres_port = postgres_running(self.data)[1]
        create_database(postgres_port, passwords[SUPERUSER], USER, passwords[USER], DATABASE)
        url, log = f"http://{HOST}:{port}", self.logs / "mlflow.log"
        self.logs.mkdir(exist_ok=True)
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port),
                 "--backend-store-uri", f"postgresql+psycopg://{USER}@{HOST}:{postgres_port}/{DATABASE}",
                 "--artifacts-destination", str(self.artifacts)],
                cwd=self.state, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                env=os.environ | {"PGPASSFILE": str(self.pgpass), **SERVER_SETTINGS},
                start_new_session=True)
        self.pid_file.write_text(f"{process.pid}\n")
        if not healthy(url, process):
            self.stop(quiet=True)
            raise ServerError(f"mlflow server did not start: {what_went_wrong(log.read_text())} "
                              f"(see {log})")
        print(f"MLflow server up (pid {process.pid}) at {url}, on PostgreSQL at {HOST}:{postgres_port}\n"
              f"export MLFLOW_TRACKING_URI={url}")

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
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=5001, help="the MLflow server's port (default 5001)")
    parser.add_argument("--postgres-port", type=int, default=5433, help="PostgreSQL's port (default 5433)")
    parser.add_argument("--postgres-bin", default=POSTGRES_BINARIES, help="where to find initdb and pg_ctl")
    args = parser.parse_args()
    server = Server(Path.cwd())
    try:
        if args.action == "start":
            server.start(args.port, args.postgres_port, args.postgres_bin)
        elif args.action == "stop":
            server.stop()
        elif not server.status():
            sys.exit(3)  # "not running", as `pg_ctl status` says it
    except ServerError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
