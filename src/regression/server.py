"""The team's MLflow tracking server: `mlflow server` on a private PostgreSQL cluster in the project.

`python -m regression.server start|stop|status` (`make server`, `make server-stop`). Everything
lives in `.mlflow-server/` at the project root: the cluster (`postgres/`, made by initdb on the
first start, with the user and database `mlflow`), the artifacts (`artifacts/`, served through
the server), `logs/`, the server's pid file, and `pgpass`: the passwords, readable by their
owner only and read by libpq, so none appears on a command line. Both listen on 127.0.0.1 only.
PostgreSQL refuses to run as root: run as root, the cluster belongs to Debian's `postgres` user.
"""

import argparse
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from glob import glob
from pathlib import Path

import psutil

HOST = "127.0.0.1"
POSTGRES_BINARIES = "/usr/lib/postgresql/*/bin"  # where Debian's postgresql package puts them
INSTALL = "sudo apt-get install postgresql"
SUPERUSER, USER, DATABASE = "postgres", "mlflow", "mlflow"
START_SECONDS = 120  # the first start creates MLflow's tables
# MLflow's job runner serves GenAI features (LLM judges, prompt optimisation) that this project
# does not use, at the cost of 8 processes and ~650 MB.
SERVER_SETTINGS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


class ServerError(Exception):
    """Why the server cannot start, in one line."""


def find_postgres(search: str = POSTGRES_BINARIES) -> Path:
    """The newest folder matching `search` that holds initdb and pg_ctl."""
    found = [Path(p) for p in glob(search) if Path(p, "initdb").is_file() and Path(p, "pg_ctl").is_file()]
    if not found:
        raise ServerError(f"PostgreSQL is not installed (no initdb and pg_ctl in {search}): "
                          f"install it with `{INSTALL}`")
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def cluster_owner() -> str | None:
    """Who runs PostgreSQL: Debian's `postgres` user when we are root, else None (we do)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SUPERUSER).pw_name
    except KeyError:
        raise ServerError(f"running as root, but there is no user {SUPERUSER} to run PostgreSQL: "
                          f"install it with `{INSTALL}`") from None


def as_owner(*command: str | Path, chown: tuple[Path, ...] = ()) -> None:
    """Run a PostgreSQL tool as the cluster's owner, who is given `chown` first."""
    owner = cluster_owner()
    for path in chown:
        if owner:
            shutil.chown(path, owner, owner)
    prefix = ["runuser", "-u", owner, "--"] if owner else []
    result = subprocess.run([*prefix, *map(str, command)], cwd="/", capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise ServerError(f"{Path(command[0]).name} failed: {what_went_wrong(result.stdout + result.stderr)}")


def what_went_wrong(output: str) -> str:
    """The line of a tool's output or log that says what went wrong: its last error, else its last line."""
    lines = output.strip().splitlines() or ["no output"]
    errors = [line for line in lines if "error:" in line.lower() or "FATAL" in line]
    return (errors or lines)[-1]


def init_cluster(binaries: Path, data: Path, superuser_password: str) -> None:
    """A new cluster in the folder `data`: password logins only, over TCP on 127.0.0.1 only."""
    data.mkdir(mode=0o700, parents=True)
    password_file = data.parent / f".{data.name}.password"  # initdb reads it as the owner
    password_file.touch(mode=0o600)
    password_file.write_text(superuser_password)
    try:
        as_owner(binaries / "initdb", "-D", data, "-U", SUPERUSER, f"--pwfile={password_file}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", chown=(data, password_file))
    finally:
        password_file.unlink()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"listen_addresses = '{HOST}'\nunix_socket_directories = ''\n")


def start_postgres(binaries: Path, data: Path, port: int, log: Path) -> None:
    check_port_free(port, "PostgreSQL's", "PG_PORT")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    try:
        as_owner(binaries / "pg_ctl", "start", "--wait", "-D", data, "-l", log, "-o", f"-p {port}",
                 chown=(log,))
    except ServerError:  # pg_ctl only says "Examine the log output."
        raise ServerError(f"PostgreSQL did not start: {what_went_wrong(log.read_text())} "
                          f"(see {log})") from None


def postgres_running(data: Path) -> tuple[int, int] | None:
    """(pid, port) of the cluster's postmaster, None if it does not run."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
        return (pid, port) if psutil.Process(pid).name() == "postgres" else None
    except (OSError, IndexError, ValueError, psutil.Error):
        return None


def stop_postgres(data: Path) -> int | None:
    """A fast shutdown (SIGINT, what `pg_ctl stop` sends): the pid it stopped, if it ran."""
    if running := postgres_running(data):
        stop_process(running[0], signal.SIGINT)
        return running[0]
    return None


def create_database(port: int, superuser_password: str, user: str, password: str,
                    database: str) -> None:
    """The login `user` and the `database` it owns, unless they exist."""
    import psycopg
    from psycopg.sql import SQL, Identifier, Literal

    user_id, database_id = Identifier(user), Identifier(database)
    try:
        with psycopg.connect(host=HOST, port=port, user=SUPERUSER, password=superuser_password,
                             dbname="postgres", autocommit=True) as db:
            if not db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user]).fetchone():
                db.execute(SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(user_id, Literal(password)))
            if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
                db.execute(SQL("CREATE DATABASE {} OWNER {}").format(database_id, user_id))
    except psycopg.Error as error:
        raise ServerError(f"PostgreSQL at {HOST}:{port}: {str(error).strip().splitlines()[0]}") from None


def stop_process(pid: int, sig: int = signal.SIGTERM, seconds: float = 30) -> None:
    """Send `sig` to `pid`, wait for it and its children to end, kill what is left after `seconds`."""
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
        process.send_signal(sig)
    except psutil.NoSuchProcess:
        return
    deadline = time.monotonic() + seconds
    while alive := [member for member in family if not ended(member)]:
        if time.monotonic() > deadline:
            for member in alive:
                with suppress(psutil.NoSuchProcess):
                    member.kill()
        time.sleep(0.1)


def ended(process: psutil.Process) -> bool:
    """Gone, or a zombie left for a parent that is not us to reap."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def check_port_free(port: int, whose: str, variable: str) -> None:
    """Fail now, naming the make variable that picks another, if something listens on `port`.

    With SO_REUSEADDR, as both servers bind: a just-closed connection's TIME_WAIT is no obstacle.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            raise ServerError(f"{HOST}:{port} ({whose} port) is in use: choose another, "
                              f"e.g. `make server {variable}={port + 1}`") from None


def healthy(url: str, process: subprocess.Popen, seconds: float = START_SECONDS) -> bool:
    """Whether `url`/health answers before the process ends or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except OSError:
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
        binaries, passwords = find_postgres(search), self.passwords()
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
