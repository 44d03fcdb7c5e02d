"""tracking: run names, the store under concurrency, signals, orphans, dead servers, bad stores.

The process tests run `tests/fake_stage.py`: the real stage runner and MLflow run, without
torch or data, against a tiny sqlite store or a loopback server they stop. A server dying while
the model is logged or registered is shown on the real train stage in a project copy, through
a proxy that kills the server when that request arrives (`DyingServer`).
"""

import http.client
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from mlflow import MlflowClient

from projects import PROJECT, environment, free_port, start_mlflow_server, stop, train_command
from tracking import TrackingError, open_experiment
from tracking.naming import changed_params, committed_params, run_name

FAKE_STAGE = Path(__file__).with_name("fake_stage.py")
# README's promises: a tracking server that does not answer stops a stage "within seconds",
# before any work (a refused connection at once; a silent one after the 5 s health check), and
# one that dies during a run stops it "within 30 s" (MLflow's requests bounded: 2 retries, 8 s
# each). Unbounded, MLflow's own HTTP retries (7, backing off from 2 s, 120 s a request) take
# minutes. The processes are waited for far longer (WAIT_SECONDS): a bound that breaks fails its
# assertion, naming the time taken, not the wait.
WITHIN_SECONDS = 20  # "within seconds": the interpreter's start and the 5 s included, on a loaded machine
DIED_SECONDS = 30
WAIT_SECONDS = 300


@pytest.fixture
def folder(tmp_path):
    """A folder with the project's params.yaml, where a fake stage runs."""
    shutil.copy(PROJECT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def store(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def fake_stage(folder: Path, *args: str, uri: str | None = None, **popen) -> subprocess.Popen:
    env = environment(PYTHONPATH=f"{PROJECT / 'src'}", MLFLOW_TRACKING_URI=uri or store(folder))
    return subprocess.Popen([sys.executable, str(FAKE_STAGE), *args], cwd=folder, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def started_run(process: subprocess.Popen) -> str:
    """Wait for the fake stage's "started <run id>" line."""
    line = process.stdout.readline()
    if not line.startswith("started "):
        pytest.fail(f"{line!r}\n{process.stderr.read() if process.poll() is not None else ''}")
    return line.split()[1]


def runs(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


# Names and params


def test_run_name_says_the_model_and_what_differs():
    assert run_name("softmax_nn", {"lr": 0.1}, "glare-dhow", "7d9c8f2abc") == "softmax_nn lr=0.1 · glare-dhow"
    assert run_name("softmax_nn", {}, None, "7d9c8f2abc") == "softmax_nn @ 7d9c8f2"
    assert run_name("linear", {"lr": 0.04, "prepare.seed": 1}, None, None) == "linear lr=0.04 prepare.seed=1"


def test_changed_params_are_this_models_and_other_sections_only():
    committed = {"train": {"a": {"lr": 0.05, "epochs": 10}, "b": {"lr": 0.05}},
                 "prepare": {"validation_size": 0}}
    current = {"train": {"a": {"lr": 0.1, "epochs": 10}, "b": {"lr": 0.2}}, "prepare": {"validation_size": 5}}
    changed = changed_params(current, committed, "a")
    assert changed == {"lr": 0.1, "prepare.validation_size": 5}
    assert list(changed) == ["lr", "prepare.validation_size"]  # the model's own first
    assert changed_params(current, {}, "a") == {}  # nothing to compare with


def test_committed_params_come_from_the_experiments_baseline(tmp_path, monkeypatch):
    env = environment()
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "1"]):
        if command[1] == "add":
            (tmp_path / "params.yaml").write_text("train:\n  lr: 1e-3\n")
        subprocess.run(command, cwd=tmp_path, env=env, check=True)
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.5\n")
    monkeypatch.chdir(tmp_path)
    assert committed_params() == {"train": {"lr": 0.001}}  # YAML 1.2, as DVC reads it


# The store


def test_parallel_first_use_of_a_new_store_loses_no_run(folder):
    """Four stages open a store that does not exist yet at the same moment: all four runs land.

    The stages are released together once all four have started up, and each says when it began
    and finished setting up; unless every one began before the first finished, they did not race
    and the test fails rather than pass on stages that ran one after another.
    """
    go = folder / "go"
    stages = [fake_stage(folder, "linear", "1", "0", "--go-file", str(go)) for _ in range(4)]
    for process in stages:
        if process.stdout.readline() != "ready\n":
            process.wait(timeout=60)
            pytest.fail(f"a stage did not start up: {process.stderr.read()}")
    go.touch()
    setups = []
    for process in stages:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        [line] = [line for line in out.splitlines() if line.startswith("started ")]
        setups.append(tuple(map(float, line.split()[2:4])))
    began, ended = max(b for b, _ in setups), min(e for _, e in setups)
    assert began < ended, f"the stages did not overlap (setups: {setups}): nothing raced"
    found = runs(store(folder))
    assert len(found) == 4 and {r.info.status for r in found} == {"FINISHED"}
    assert len(MlflowClient(store(folder)).search_experiments()) == 2  # Default and the synthetic data's


def test_an_experiment_another_stage_creates_first_is_the_one_used(folder, monkeypatch):
    """Two stages find no experiment and both create it (on a server, where no file lock keeps them
    apart): the one that loses uses the experiment the other made."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store(folder))
    monkeypatch.chdir(folder)
    first = open_experiment("fashion-mnist")
    lookups = []
    real_lookup = mlflow.get_experiment_by_name

    def not_yet_created_on_first_lookup(name):  # the other stage creates it just after our lookup
        lookups.append(name)
        return None if len(lookups) == 1 else real_lookup(name)

    monkeypatch.setattr(mlflow, "get_experiment_by_name", not_yet_created_on_first_lookup)
    assert open_experiment("fashion-mnist") == first
    assert len(lookups) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_store_is_one_line_naming_the_file_and_the_way_out(folder, damage, monkeypatch):
    database = folder / "mlflow.db"
    if damage == "garbage":
        database.write_bytes(b"this is not an sqlite database\n" * 200)
    else:
        process = fake_stage(folder, "linear", "1", "0")
        process.communicate(timeout=120)
        database.write_bytes(database.read_bytes()[:20000])
    process = fake_stage(folder, "linear", "1", "0")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert str(database) in err and "mv " in err and "outputs are not" in err


# Signals and orphans


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT], [signal.SIGTERM, signal.SIGINT]],
                         ids=["sigterm", "sigint", "twice"])
def test_signal_ends_the_run_killed(folder, signals):
    process = fake_stage(folder, "softmax_nn", "100", "0.2")
    run_id = started_run(process)
    for s in signals:
        process.send_signal(s)
        time.sleep(0.05)  # the second arrives while the first one's clean-up runs
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signals[0]
    assert f"interrupted by {signal.Signals(signals[0]).name}" in err and "Traceback" not in err
    assert MlflowClient(store(folder)).get_run(run_id).info.status == "KILLED"


def test_run_orphaned_by_kill_9_is_marked_killed_when_its_model_starts_again(folder):
    process = fake_stage(folder, "softmax_nn", "100", "0.2")
    orphan = started_run(process)
    process.kill()
    process.wait()
    client = MlflowClient(store(folder))
    assert client.get_run(orphan).info.status == "RUNNING"

    other_model = fake_stage(folder, "linear", "1", "0")
    out, err = other_model.communicate(timeout=120)
    assert other_model.returncode == 0 and "MLflow run" in out and "FINISHED" in out, err
    assert client.get_run(orphan).info.status == "RUNNING"  # another model's stage leaves it alone

    again = fake_stage(folder, "softmax_nn", "1", "0")
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0
    assert f"marked MLflow run {orphan} KILLED" in out
    marked = client.get_run(orphan)
    assert marked.info.status == "KILLED"
    assert "orphaned" in marked.data.tags["mlflow.runStatusReason"]


def test_a_running_stage_of_the_same_model_is_not_taken_for_an_orphan(folder):
    first = fake_stage(folder, "softmax_nn", "100", "0.2")
    alive = started_run(first)
    second = fake_stage(folder, "softmax_nn", "1", "0")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0 and "FINISHED" in out and "marked" not in out, out + err
    assert MlflowClient(store(folder)).get_run(alive).info.status == "RUNNING"
    assert first.poll() is None  # still running: the check above was made during its run
    first.terminate()
    first.communicate(timeout=60)
    assert MlflowClient(store(folder)).get_run(alive).info.status == "KILLED"


# Servers that are not there


def test_unreachable_server_fails_before_any_work_in_one_line(folder):
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    process = fake_stage(folder, "linear", "1", "0", uri=uri)
    out, err = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 1 and "started" not in out
    assert time.monotonic() - started < WITHIN_SECONDS
    assert len(err.strip().splitlines()) == 1 and uri in err and "make server" in err, err


def test_hanging_server_fails_within_seconds(folder):
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        started = time.monotonic()
        process = fake_stage(folder, "linear", "1", "0", uri=uri)
        out, err = process.communicate(timeout=WAIT_SECONDS)
        assert process.returncode == 1 and uri in err and "Traceback" not in err
        assert "started" not in out  # before any work
        assert time.monotonic() - started < WITHIN_SECONDS
    finally:
        listener.close()


@pytest.mark.slow
def test_server_dying_during_training_fails_the_stage_within_bounded_time(folder, tmp_path):
    server, uri = start_mlflow_server(tmp_path)
    process = fake_stage(folder, "softmax_nn", "1000", "0.2", uri=uri)
    started_run(process)
    stop(server, signal.SIGKILL)
    died = time.monotonic()
    _, err = process.communicate(timeout=WAIT_SECONDS)
    assert time.monotonic() - died < DIED_SECONDS
    assert process.returncode == 1 and uri in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


class DyingServer:
    """An MLflow server seen through a proxy on 127.0.0.1 that kills it (SIGKILL) when the first
    request matching `when(method, path)` arrives, and answers nothing after that: to its client
    the server dies in the middle of that request. .url is the proxy's, .died when it killed."""

    def __init__(self, folder: Path, when):
        self.server, upstream = start_mlflow_server(folder)
        self.upstream, self.when, self.died, self.requests = urlsplit(upstream).netloc, when, None, []
        self.lock = threading.Lock()
        proxy = self

        class Relay(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def relay(self):
                proxy.requests.append(f"{self.command} {self.path}")
                with proxy.lock:
                    if proxy.died is None and proxy.when(self.command, self.path):
                        stop(proxy.server, signal.SIGKILL)
                        proxy.died = time.monotonic()
                        threading.Thread(target=proxy.close).start()
                if proxy.died is not None:
                    self.close_connection = True  # no answer: the connection closes
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("connection", "content-length", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay

        self.proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.proxy.daemon_threads = True
        threading.Thread(target=self.proxy.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.proxy.server_address[1]}"
        self.closed = False

    def close(self) -> None:
        """Stop listening (new connections are refused, as by a dead server)."""
        if not self.closed:
            self.closed = True
            self.proxy.shutdown()
            self.proxy.server_close()


def uploads_the_model(method: str, path: str) -> bool:
    """The first file of the logged model (not of the run) sent to the server's artifact store."""
    return method == "PUT" and "/mlflow-artifacts/artifacts/" in path and "/models/" in path


def registers_the_model(method: str, path: str) -> bool:
    return "/registered-models/" in path or "/model-versions/" in path


@pytest.mark.slow
@pytest.mark.parametrize("when", [uploads_the_model, registers_the_model], ids=["logging", "registering"])
def test_server_dying_while_the_model_is_logged_or_registered_fails_the_stage_in_one_line(
        project_copy, tmp_path, when):
    """The real train stage against a server killed during its last steps (logging the model,
    registering it): one line naming the run and the server, in bounded time."""
    server = DyingServer(tmp_path, when)
    try:
        env = environment(MLFLOW_TRACKING_URI=server.url, PYTHONPATH="src")
        stage = subprocess.Popen(train_command("linear"), cwd=project_copy, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _, err = stage.communicate(timeout=WAIT_SECONDS)  # it needs 10-60 s to reach the model
        except subprocess.TimeoutExpired:
            stage.kill()
            _, err = stage.communicate()
            pytest.fail(f"the stage still ran after {WAIT_SECONDS} s "
                        f"(server killed: {server.died is not None}): {err}")
        ended = time.monotonic()
    finally:
        server.close()
        stop(server.server, signal.SIGKILL)
    assert server.died is not None, f"the server never saw that request: {server.requests}"
    assert ended - server.died < DIED_SECONDS
    assert stage.returncode == 1 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: MLflow run ") and server.url in err, err


def test_store_lock_serialises_setup(folder, monkeypatch):
    """While another process holds the store's lock, setting up waits for it."""
    from filelock import FileLock

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store(folder))
    lock = FileLock(f"{folder / 'mlflow.db'}.lock")
    lock.acquire()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (open_experiment("fashion-mnist"), done.set()))
    thread.start()
    try:
        assert not done.wait(1.5)
    finally:
        lock.release()
    thread.join(60)
    assert done.is_set()


def test_tracking_error_is_a_pipeline_error():
    from regression import PipelineError

    assert issubclass(TrackingError, PipelineError)


# The train stage's companion: the real stage on the synthetic data, its run kept by a second process


@pytest.fixture
def synthetic_folder(folder, linear_data):
    """`folder` with the synthetic dataset where the train stage's command reads it."""
    from regression.data import save_dataset

    save_dataset(folder / "data" / "synthetic", linear_data.arrays, linear_data.meta)
    return folder


def train_stage(folder: Path, *python_flags: str, epochs: int | None = None, uri: str | None = None,
                **popen) -> subprocess.Popen:
    """The train stage of the linear model in `folder` (with `epochs`, if given, in its params.yaml)."""
    if epochs is not None:
        params = (folder / "params.yaml").read_text()
        (folder / "params.yaml").write_text(params.replace("epochs: 10", f"epochs: {epochs}", 1))
    env = environment(PYTHONPATH=str(PROJECT / "src"), MLFLOW_TRACKING_URI=uri or store(folder),
                      PYTHONUNBUFFERED="1")
    command = train_command("linear")
    return subprocess.Popen([sys.executable, *python_flags, str(PROJECT / command[1]), *command[2:]],
                            cwd=folder, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **popen)


def the_one_run(folder: Path):
    client = MlflowClient(store(folder))
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return run


def until_training(process: subprocess.Popen) -> str:
    """Read the stage's output until its first epoch is printed."""
    seen = ""
    for line in process.stdout:
        seen += line
        if line.startswith("epoch 1,"):
            return seen
    pytest.fail(f"the stage ended before training: {seen}{process.stderr.read()}")


def test_train_stage_records_its_whole_run_through_its_companion(synthetic_folder):
    stage = train_stage(synthetic_folder)
    out, err = stage.communicate(timeout=WAIT_SECONDS)
    assert stage.returncode == 0, err
    run = the_one_run(synthetic_folder)
    client = MlflowClient(store(synthetic_folder))
    assert run.info.status == "FINISHED" and f"MLflow run {run.info.run_id} FINISHED" in out
    assert run.data.params["lr"] == "0.05" and run.data.params["model"] == "linear"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == list(range(1, 11))
    assert "process.pid" not in run.data.tags and run.data.tags["model"] == "linear"
    [version] = client.search_model_versions("name = 'synthetic-linear'")
    assert version.run_id == run.info.run_id and f"model version {version.version} of synthetic-linear" in out
    assert (synthetic_folder / "models" / "linear.pt").exists()


def loaded_libraries(pid: int) -> set[str]:
    """The shared objects a process has mapped (its loaded C extensions among them)."""
    return {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if line.endswith(".so") or ".so." in line}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_in_training_ends_the_train_stage_s_run_killed(synthetic_folder, signum):
    """Ctrl-C (SIGINT to the stage's process group) or SIGTERM to the stage, in training."""
    stage = train_stage(synthetic_folder, epochs=100_000, start_new_session=True)
    until_training(stage)
    os.killpg(stage.pid, signum)
    _, err = stage.communicate(timeout=WAIT_SECONDS)
    assert stage.returncode == 128 + signum and "Traceback" not in err, err
    run = the_one_run(synthetic_folder)
    assert run.info.status == "KILLED" and "process.pid" not in run.data.tags
    assert not (synthetic_folder / "models").exists()


def test_kill_9_of_the_train_stage_ends_its_run_killed_by_its_companion(synthetic_folder):
    """The companion alone loads MLflow (its store's SQLAlchemy, C extensions seen in /proc), and
    ends the run when the stage is killed."""
    stage = train_stage(synthetic_folder, epochs=100_000, start_new_session=True)
    until_training(stage)
    [companion] = psutil.Process(stage.pid).children()
    deadline = time.monotonic() + WAIT_SECONDS
    while not any("/sqlalchemy/" in so for so in loaded_libraries(companion.pid)):
        assert time.monotonic() < deadline, "the companion never loaded MLflow's store"
        time.sleep(0.2)
    assert not any("/sqlalchemy/" in so for so in loaded_libraries(stage.pid))
    assert any("/torch/" in so for so in loaded_libraries(stage.pid))
    os.killpg(stage.pid, signal.SIGKILL)
    stage.communicate(timeout=WAIT_SECONDS)  # the output's pipe closes when the companion has exited
    run = the_one_run(synthetic_folder)
    assert run.info.status == "KILLED"
    assert run.data.tags["mlflow.runStatusReason"] == "the stage's process ended without ending the run"


def test_an_unusable_store_fails_the_train_stage_in_one_line_and_writes_nothing(synthetic_folder):
    database = synthetic_folder / "mlflow.db"
    database.write_bytes(b"this is not an sqlite database\n" * 200)
    stage = train_stage(synthetic_folder)
    _, err = stage.communicate(timeout=WAIT_SECONDS)
    assert stage.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {database}: not a usable MLflow store"), err
    assert not (synthetic_folder / "models").exists() and not (synthetic_folder / "metrics").exists()


def test_an_unreachable_server_fails_the_train_stage_before_training(synthetic_folder):
    uri = f"http://127.0.0.1:{free_port()}"
    stage = train_stage(synthetic_folder, uri=uri)
    out, err = stage.communicate(timeout=WAIT_SECONDS)
    assert stage.returncode == 1 and "epoch" not in out and len(err.strip().splitlines()) == 1, out + err
    assert uri in err and "make server" in err
