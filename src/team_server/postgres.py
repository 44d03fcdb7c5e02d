"""The team server's PostgreSQL: a private cluster made, started and stopped, with MLflow's database.

Also what both servers of `server` share: the host they listen on, a port check that names the
make variable picking another, and stopping a process with its children. PostgreSQL refuses to
run as root: run as root, the cluster belongs to Debian's `postgres` user.
"""

import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from contextlib import suppress
from glob import glob
from pathlib import Path

import psutil

HOST = "127.0.0.1"
POSTGRES_BINARIES = "/usr/lib/postgresql/*/bin"  # where Debian's postgresql package puts them
INSTALL = "sudo apt-get install postgresql"
SUPERUSER, USER, DATABASE = "postgres", "mlflow", "mlflow"


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


def check_owner_can_enter(folder: Path) -> None:
    """Refuse at once where the cluster's owner could not reach `folder` (a project under /root,
    or any folder only root may enter): PostgreSQL would fail later, deep inside initdb."""
    owner = cluster_owner()
    if owner is None:
        return
    user = pwd.getpwnam(owner)
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if owner in g.gr_mem}
    for path in [*reversed(folder.resolve().parents), folder.resolve()]:
        if not path.exists():
            break
        mode = path.stat()
        allowed = (stat.S_IXUSR if mode.st_uid == user.pw_uid
                   else stat.S_IXGRP if mode.st_gid in groups else stat.S_IXOTH)
        if not mode.st_mode & allowed:
            raise ServerError(f"PostgreSQL runs as the user {owner}, who cannot enter {path} "
                              f"(mode {stat.filemode(mode.st_mode)}): move the project into a folder others "
                              f"may enter (e.g. /srv), or let them through with `chmod o+x {path}`")


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


def check_port_free(port: int, whose: str, variable: str, host: str = HOST) -> None:
    """Fail now, naming the make variable that picks another, if something listens on `port` of `host`.

    With SO_REUSEADDR, as both servers bind: a just-closed connection's TIME_WAIT is no obstacle.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise ServerError(f"{host}:{port} ({whose} port) is in use: choose another, "
                              f"e.g. `make server {variable}={port + 1}`") from None


