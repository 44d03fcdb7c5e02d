"""The whole pipeline, for real: `dvc repro` in a temporary git repo, on tiny IDX files served
over HTTP from 127.0.0.1 (the download stage's real code path), tracked in a real MLflow store.

One module-scoped project is reproduced once and then inspected by the tests below, in order.
"""

import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from idx_files import write_tiny_fashion_mnist
from regression.files import sha256_file
from regression.tracking import DEFAULT_EXPERIMENT

PROJECT = Path(__file__).resolve().parents[1]
COPIED = ["dvc.yaml", "params.yaml", "stages", "src", ".dvc/config", ".dvc/.gitignore",
          ".dvcignore", ".gitignore"]
BIN = Path(sys.executable).parent
MODELS = ["linear", "softmax_scratch", "softmax_nn"]
STAGES = ["download", "generate", "samples"] + [f"{s}@{m}" for s in ("train", "evaluate") for m in MODELS]


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "DVC_", "FASHION_MNIST_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", MLFLOW_DISABLE_TELEMETRY="true",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com")
    env.update(extra)
    return env


def run(project: Path, *command: str, env: dict | None = None, check: bool = True):
    result = subprocess.run(command, cwd=project, env=env or environment(), capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def make_project(dest: Path, source_url: str, checksums: dict) -> Path:
    """A git repo holding a copy of the project, downloading from `source_url`."""
    for name in COPIED:
        src, dst = PROJECT / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["download"]["sources"] = [source_url, "file:///nonexistent/fashion-mnist/"]
    params["download"]["files"] = checksums
    # On tiny data, equal seeds make the two softmax models predict exactly alike, and DVC would
    # then restore one's evaluation from the other's cached predictions instead of running it.
    # (Equal seeds giving equal weights is tested in test_models.py.)
    params["train"]["softmax_nn"]["seed"] = 1
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(dest, "git", "init", "-q")
    run(dest, "git", "add", "-A")
    run(dest, "git", "commit", "-qm", "project")
    return dest


@pytest.fixture(scope="module")
def data_server(tmp_path_factory):
    """Tiny Fashion-MNIST .gz files over HTTP on 127.0.0.1; yields (url, checksums)."""
    folder = tmp_path_factory.mktemp("mirror")
    checksums = write_tiny_fashion_mnist(folder, n_train=500, n_test=100)
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", checksums
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def snapshot(project: Path) -> dict:
    """What two identical runs must agree on: every output hash in dvc.lock, every metrics file."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    outs = {stage: sorted((o["path"], o["md5"]) for o in entry.get("outs", []))
            for stage, entry in lock["stages"].items()}
    metrics = {str(p.relative_to(project)): p.read_bytes() for p in sorted((project / "metrics").rglob("*"))
               if p.is_file()}
    return {"outs": outs, "metrics": metrics}


@pytest.fixture(scope="module")
def project(tmp_path_factory, data_server):
    """The project after one cold `dvc repro`: (path, repro output, snapshot)."""
    url, checksums = data_server
    path = make_project(tmp_path_factory.mktemp("project"), url, checksums)
    result = run(path, "dvc", "repro")
    return path, result.stdout + result.stderr, snapshot(path)


def client_for(path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{path / 'mlflow.db'}")


def runs_by_model(client: MlflowClient) -> dict:
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    by_model = {}
    for r in runs:
        by_model.setdefault(r.data.tags["model"], []).append(r)
    return by_model


def test_repro_runs_every_stage_and_meets_targets(project):
    path, output, _ = project
    assert stages_run(output) == set(STAGES)
    for model in ("softmax_scratch", "softmax_nn"):
        evaluation = json.loads((path / f"metrics/{model}/eval.json").read_text())
        assert evaluation["test_accuracy"] > 0.9  # the tiny images carry their class in plain sight
        assert set(evaluation["per_class_accuracy"]) >= {"T-shirt/top", "Ankle boot"}
        history = json.loads((path / f"metrics/{model}/history.json").read_text())
        assert [r["epoch"] for r in history] == list(range(1, 11))
        assert history[-1]["train_loss"] < history[0]["train_loss"]
        rows = (path / f"metrics/{model}/predictions.csv").read_text().splitlines()
        assert rows[0] == "actual,predicted" and len(rows) == 101
    linear = json.loads((path / "metrics/linear/eval.json").read_text())
    assert linear["w_abs_error"] < 0.01 and linear["b_abs_error"] < 0.01
    assert (path / "metrics/fashion-mnist-samples.png").read_bytes().startswith(b"\x89PNG")
    assert not list((path / "data").glob(".*tmp*")), "temporary download folders left behind"


def test_each_train_run_is_tracked_in_mlflow(project):
    path, _, _ = project
    client = client_for(path)
    by_model = runs_by_model(client)
    head = run(path, "git", "rev-parse", "HEAD").stdout.strip()
    assert set(by_model) == set(MODELS)
    for model, runs in by_model.items():
        assert len(runs) == 1
        r = runs[0]
        assert r.info.status == "FINISHED"
        assert r.data.params["lr"] == "0.05" and r.data.params["batch_size"] == "100"
        assert r.data.tags["dvc.stage"] == f"train@{model}"
        assert r.data.tags["mlflow.source.git.commit"] == head
        assert r.data.tags["model.sha256"] == sha256_file(path / f"models/{model}.pt")
        history = client.get_metric_history(r.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == list(range(1, 11))
        final = "test_mse" if model == "linear" else "test_accuracy"
        assert final in r.data.metrics  # added by the evaluate stage
        [dataset_input] = r.inputs.dataset_inputs
        assert dataset_input.dataset.digest == r.data.tags["data.digest"]
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "evaluation")}
        assert "evaluation/predictions.csv" in artifacts
        if model != "linear":
            assert "evaluation/confusion_matrix.png" in artifacts


def test_logged_model_loads_and_predicts(project):
    path, _, _ = project
    import numpy as np
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlflow.db'}")
    r = runs_by_model(client_for(path))["softmax_nn"][0]
    model = mlflow.pyfunc.load_model(f"runs:/{r.info.run_id}/model")
    predictions = np.asarray(model.predict(np.zeros((3, 784), dtype=np.float32)))
    assert predictions.shape == (3, 10)


def test_second_repro_runs_nothing(project):
    path, _, _ = project
    result = run(path, "dvc", "repro")
    assert stages_run(result.stdout) == set()
    assert json.loads(run(path, "dvc", "status", "--json").stdout) == {}


def test_fresh_clone_reproduces_identical_outputs(project, tmp_path_factory):
    """A clone of the committed results, with an empty DVC cache, re-runs train and evaluate."""
    path, _, first = project
    run(path, "git", "add", "-A")
    run(path, "git", "commit", "-qm", "results")
    again = tmp_path_factory.mktemp("clone") / "project"
    run(path, "git", "clone", "-q", str(path), str(again))
    assert not (again / ".dvc/cache").exists() and not (again / "mlflow.db").exists()
    result = run(again, "dvc", "repro")
    assert {f"{s}@{m}" for s in ("train", "evaluate") for m in MODELS} <= stages_run(result.stdout), result.stdout
    for model, [r] in runs_by_model(client_for(again)).items():
        assert ("test_mse" if model == "linear" else "per_class_accuracy.Shirt") in r.data.metrics
    second = snapshot(again)
    assert second["outs"] == first["outs"]
    assert second["metrics"].keys() == first["metrics"].keys()
    for name, data in first["metrics"].items():
        assert second["metrics"][name] == data, f"{name} differs between two cold runs"


def test_exp_run_reruns_only_the_changed_model(project):
    path, _, _ = project
    result = run(path, "dvc", "exp", "run", "-n", "nn-lr-0.1", "-S", "train.softmax_nn.lr=0.1")
    assert stages_run(result.stdout) == {"train@softmax_nn", "evaluate@softmax_nn"}
    runs = runs_by_model(client_for(path))["softmax_nn"]
    assert len(runs) == 2
    latest = runs[-1]
    assert latest.data.params["lr"] == "0.1"
    assert latest.data.tags.get("dvc.experiment") == "nn-lr-0.1"
    assert "test_accuracy" in latest.data.metrics


def test_queued_experiment_lands_in_the_project_store(project):
    path, _, _ = project
    run(path, "dvc", "exp", "run", "--queue", "-n", "queued-lr", "-S", "train.linear.lr=0.04")
    run(path, "dvc", "queue", "start")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = run(path, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    run(path, "dvc", "queue", "stop", "--kill", check=False)
    linear_runs = runs_by_model(client_for(path))["linear"]
    assert [r.data.params["lr"] for r in linear_runs] == ["0.05", "0.04"], status
    assert linear_runs[-1].data.tags.get("dvc.experiment") == "queued-lr"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("mlflow server did not start")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_tracking_to_an_mlflow_server_over_http(project, mlflow_server):
    path, _, _ = project
    env = environment(MLFLOW_TRACKING_URI=mlflow_server, PYTHONPATH="src")
    run(path, "python", "stages/train.py", "linear", env=env)
    run(path, "python", "stages/evaluate.py", "linear", env=env)
    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient(mlflow_server)
    [r] = runs_by_model(client)["linear"]
    assert r.info.status == "FINISHED" and "test_mse" in r.data.metrics
    import numpy as np
    model = mlflow.pyfunc.load_model(f"runs:/{r.info.run_id}/model")
    assert np.asarray(model.predict(np.ones((2, 2), dtype=np.float32))).shape == (2, 1)


def test_diverging_run_is_marked_failed(project):
    path, _, _ = project
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["train"]["linear"]["lr"] = 1e10
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = (path / "models/linear.pt").read_bytes()
    result = run(path, "python", "stages/train.py", "linear", env=environment(PYTHONPATH="src"), check=False)
    assert result.returncode == 1
    assert "train.linear" in result.stderr and "Traceback" not in result.stderr
    assert (path / "models/linear.pt").read_bytes() == before
    latest = runs_by_model(client_for(path))["linear"][-1]
    assert latest.info.status == "FAILED"
    run(path, "git", "checkout", "params.yaml")
