"""The team's tracking server: a stage recording into MLflow on PostgreSQL, and `make server`'s
`python -m team_server.server start|status|stop` in a project folder of its own."""

import http.client
import os
import secrets
import ssl
import shutil
import stat
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import psutil
import psycopg
import pytest
from mlflow import MlflowClient

from projects import BIN, PROJECT, environment, free_port, run, runs_by_model, train_command
from team_server.postgres import ended

pytestmark = pytest.mark.slow

# `make server-stop` with a client connected over HTTPS: seconds (the server's GRACE_SECONDS for
# requests in flight, then PostgreSQL's fast shutdown), where uvicorn alone waited 30 s for the
# client to hang up, until the stop killed it.
STOP_SECONDS = 20
EXPERIMENT = "test-server"  # the session's server is shared: this test's runs stay apart


def test_a_stage_records_its_run_and_model_into_mlflow_on_postgresql(project_copy, mlflow_pg_server):
    env = environment(MLFLOW_TRACKING_URI=mlflow_pg_server, MLFLOW_EXPERIMENT_NAME=EXPERIMENT,
                      PYTHONPATH="src")
    run(project_copy, *train_command("linear"), env=env)
    client = MlflowClient(mlflow_pg_server)
    [r] = runs_by_model(client, EXPERIMENT)["linear"]
    assert r.info.status == "FINISHED"
    assert r.data.params["lr"] == "0.05" and r.data.params["epochs"] == "10"
    assert {"test_loss", "train_loss"} <= set(r.data.metrics)
    assert [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")] == list(range(1, 11))
    assert r.info.artifact_uri.startswith("mlflow-artifacts:/")  # stored by the server, not by us
    [version] = client.search_model_versions(f"run_id = '{r.info.run_id}'")
    assert version.name == "synthetic-linear" and version.status == "READY"
    mlflow.set_tracking_uri(mlflow_pg_server)
    model = mlflow.pyfunc.load_model(f"models:/synthetic-linear/{version.version}")
    predicted = model.predict(np.ones((2, 2), dtype=np.float32))["prediction"]
    assert np.allclose(predicted, 2.0 - 3.4 + 4.2, atol=0.05)  # y = Xw + b with the true w and b


def server(project, *args: str):
    return run(project, str(BIN / "python"), "-m", "team_server.server", *args,
               env=environment(PYTHONPATH="src"), check=False, timeout=180)


def test_a_client_connected_over_https_does_not_hold_the_stop_up(postgres_binaries, postgres_tmp_path):
    from team_server.tls import make_certificate

    project = postgres_tmp_path / "project"
    shutil.copytree(PROJECT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "params.yaml", project / "params.yaml")  # the datasets the server makes experiments for
    cert, key = make_certificate(postgres_tmp_path / "tls")
    port = free_port()
    try:
        started = server(project, "start", "--port", str(port), "--postgres-port", str(free_port()),
                         "--cert", str(cert), "--key", str(key))
        assert started.returncode == 0, started.stderr
        client = http.client.HTTPSConnection("127.0.0.1", port, timeout=5,
                                             context=ssl.create_default_context(cafile=str(cert)))
        client.request("GET", "/health")
        assert client.getresponse().read() == b"OK"  # and the connection stays open (HTTP/1.1)
        began = time.monotonic()
        stopped = server(project, "stop")
        assert stopped.returncode == 0 and time.monotonic() - began < STOP_SECONDS, stopped.stdout
        client.close()
    finally:
        server(project, "stop")


def test_stages_recording_the_same_dataset_at_the_same_moment_all_get_it(mlflow_pg_server, tmp_path,
                                                                        monkeypatch):
    """Stages on several workers (queued experiments) train on one dataset and may end, and
    record, in the same instant. MLflow looks each dataset up and inserts it if missing, so both
    insert it and one insert fails on the table's key (measured: 17 of 40 such pairs). Every run
    must still get its datasets, and end FINISHED."""
    from mlflow.store.tracking.rest_store import RestStore

    from tracking.record import Trained, record
    from tracking.store import open_experiment

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_pg_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"datasets-race-{secrets.token_hex(4)}")
    open_experiment("synthetic")  # made once here: the race tested is the datasets'
    rounds, workers = 8, 3
    barrier, calls = threading.Barrier(workers), threading.local()
    log_inputs = RestStore.log_inputs

    def at_once(store, *args, **kwargs):
        """A worker's first request logging datasets waits for the others' (a retry does not)."""
        if not getattr(calls, "made", False):
            calls.made = True
            barrier.wait(timeout=60)
        return log_inputs(store, *args, **kwargs)

    monkeypatch.setattr(RestStore, "log_inputs", at_once)
    errors, recorded = [], []

    def stage(data: dict) -> None:
        now = time.time()
        trained = Trained({"lr": 0.05}, [{"epoch": 1, "train_loss": 0.5, "test_loss": 0.6}], now, now)
        try:
            record("linear", "train@linear", "synthetic", data, trained, folder=tmp_path)
        except Exception as error:  # noqa: BLE001 - the assertion below reports it
            errors.append(error)
        else:
            recorded.append(trained.name)

    for _ in range(rounds):  # a new dataset digest each round: a new race
        data = {"name": "synthetic", "digest": secrets.token_hex(8)}
        threads = [threading.Thread(target=stage, args=(data,)) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not [thread for thread in threads if thread.is_alive()], "a worker never finished"
    assert not errors, errors
    assert len(recorded) == rounds * workers
    client = MlflowClient(mlflow_pg_server)
    experiment = client.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT_NAME"]).experiment_id
    runs = client.search_runs([experiment], max_results=100)
    assert len(runs) == rounds * workers  # 24 runs, each checked below
    for found in runs:
        assert found.info.status == "FINISHED"
        names = sorted(i.dataset.name for i in found.inputs.dataset_inputs)
        assert names == ["synthetic-test", "synthetic-train"], found.info.run_id


def listening_sockets(processes) -> set[tuple[str, int]]:
    """(ip, port) of each socket the processes listen on. A process that ends meanwhile (the
    PostgreSQL backend of a connection just closed) listens on nothing."""
    found = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def test_server_starts_once_says_where_and_stops_leaving_nothing_running(postgres_binaries,
                                                                        postgres_tmp_path):
    project = postgres_tmp_path / "project"
    shutil.copytree(PROJECT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "params.yaml", project / "params.yaml")  # the datasets the server makes experiments for
    port, postgres_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        started = server(project, "start", "--port", str(port), "--postgres-port", str(postgres_port))
        assert started.returncode == 0, started.stderr
        assert started.stdout.splitlines()[-1] == f"export MLFLOW_TRACKING_URI={url}"
        with urllib.request.urlopen(f"{url}/health", timeout=5) as health:
            assert health.read() == b"OK"

        again = server(project, "start", "--port", str(free_port()))
        assert again.returncode == 0 and "already running" in again.stdout and url in again.stdout

        status = server(project, "status")
        assert status.returncode == 0
        assert status.stdout.splitlines()[0].startswith("MLflow server: running") and url in status.stdout
        assert "PostgreSQL: running" in status.stdout and f"127.0.0.1:{postgres_port}" in status.stdout

        state = project / ".mlflow-server"
        with psycopg.connect(host="127.0.0.1", port=postgres_port, user="mlflow", dbname="mlflow",
                             passfile=str(state / "pgpass")) as db:
            assert db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'mlflow'").fetchone() == (False,)
            assert db.execute("SELECT count(*) FROM experiments").fetchone()[0] >= 1  # MLflow's tables
        # The accounts: their database beside MLflow's, the admin made from auth.ini, none answered without one.
        with psycopg.connect(host="127.0.0.1", port=postgres_port, user="mlflow", dbname="mlflow_auth",
                             passfile=str(state / "pgpass")) as db:
            assert db.execute("SELECT username, is_admin FROM users").fetchall() == [("admin", True)]
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=5)
        mlflow_server = psutil.Process(int((state / "mlflow.pid").read_text()))
        postmaster = psutil.Process(int((state / "postgres/postmaster.pid").read_text().split()[0]))
        family = [p for root in (mlflow_server, postmaster) for p in (root, *root.children(recursive=True))]

        # The passwords are readable by their owner only; both servers listen on 127.0.0.1 only.
        for secret in ("pgpass", "auth.ini"):
            assert stat.S_IMODE((state / secret).stat().st_mode) == 0o600, secret
            assert (state / secret).stat().st_uid == os.geteuid()
        listening = listening_sockets(family)
        assert {port, postgres_port} == {listen_port for _, listen_port in listening}, listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening

        stopped = server(project, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.splitlines() == [f"MLflow server (pid {mlflow_server.pid}) stopped",
                                               f"PostgreSQL (pid {postmaster.pid}) stopped"]
        assert all(ended(p) for p in family)
        after = server(project, "status")
        assert after.returncode == 3 and after.stdout.splitlines() == ["MLflow server: not running",
                                                                       "PostgreSQL: not running"]
    finally:
        server(project, "stop")


def test_server_without_postgresql_fails_in_one_line_naming_the_install_command(tmp_path):
    shutil.copytree(PROJECT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "params.yaml", tmp_path / "params.yaml")  # the datasets the server makes experiments for
    (tmp_path / "empty").mkdir()
    result = server(tmp_path, "start", "--postgres-bin", str(tmp_path / "empty"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        (f"error: PostgreSQL is not installed (no initdb and pg_ctl in {tmp_path / 'empty'}): "
         "install it with `sudo apt-get install postgresql`")]
    assert not (tmp_path / ".mlflow-server").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to the postgres user")
def test_server_as_root_in_a_folder_postgres_cannot_enter_refuses_at_once_saying_what_to_do(postgres_tmp_path):
    """A project under /root, or in any folder only root may enter: initdb would fail deep inside."""
    closed = postgres_tmp_path / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    project = closed / "project"
    shutil.copytree(PROJECT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "params.yaml", project / "params.yaml")  # the datasets the server makes experiments for
    result = server(project, "start")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: PostgreSQL runs as the user postgres, who cannot enter {closed} (mode drwx------): move the "
        f"project into a folder others may enter (e.g. /srv), or let them through with `chmod o+x {closed}`"]
    assert not (project / ".mlflow-server").exists()


def test_make_servers_server_records_a_real_run(reproduced, postgres_binaries, postgres_tmp_path):
    """`make server` in a copy of the project, then `dvc repro` with the MLFLOW_TRACKING_URI it
    says to export: the run, its metrics, artifacts and registered model are on the server."""
    from projects import copy_of

    project = copy_of(reproduced[0], postgres_tmp_path / "project")
    venv = f"VENV={BIN.parent}"
    try:
        started = run(project, "make", "--no-print-directory", venv, "server", f"PORT={free_port()}",
                      f"PG_PORT={free_port()}", env=environment(), timeout=180)
        # the lines it says to paste: the server's address and the admin's account
        exported = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
                        if line.startswith("export "))
        uri = exported["MLFLOW_TRACKING_URI"]
        assert uri.startswith("http://127.0.0.1:"), started.stdout
        account = {key: exported[key] for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        run(project, "dvc", "repro", "-f", "train@linear", env=environment(MLFLOW_TRACKING_URI=uri, **account))
        os.environ.update(account)  # for the client below; the test process's own
        client = MlflowClient(uri)
        [r] = runs_by_model(client)["linear"]
        assert r.info.status == "FINISHED" and r.info.artifact_uri.startswith("mlflow-artifacts:/")
        assert [m.step for m in client.get_metric_history(r.info.run_id, "test_loss")] == list(range(1, 11))
        logged = client.download_artifacts(r.info.run_id, "evaluation/predictions.csv", str(postgres_tmp_path))
        assert Path(logged).read_bytes() == (project / "metrics/linear/evaluation/predictions.csv").read_bytes()
        [version] = client.search_model_versions("name = 'synthetic-linear'")
        assert version.run_id == r.info.run_id and version.status == "READY"
        assert not (project / "mlflow.db").exists()  # nothing went to the local store
    finally:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key, None)
        run(project, "make", "--no-print-directory", venv, "server-stop", env=environment(), check=False)
