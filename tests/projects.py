"""Temporary copies of the project in real git repos, and ways to run DVC and the stages in them.

Downloads come from tiny Fashion-MNIST look-alike IDX files served over HTTP from 127.0.0.1 (the
download stage's real code path); the MLflow store is the copy's own `mlflow.db`.
"""

import contextlib
import functools
import gzip
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from idx_files import write_tiny_fashion_mnist
from regression.numerics import PINNED_ENVIRONMENT
from regression.params import read_yaml
from team_server.postgres import stop_process

PROJECT = Path(__file__).resolve().parents[1]
COPIED = ["dvc.yaml", "params.yaml", "stages", "src", "Makefile", "requirements.txt", "requirements.lock",
          ".dvc/config", ".dvc/.gitignore", ".dvc/plots",
          ".dvcignore", ".gitignore", "data/.gitignore", "models/.gitignore"]
BIN = Path(sys.executable).parent
PARAMS = read_yaml(PROJECT / "params.yaml")
DVC_YAML = read_yaml(PROJECT / "dvc.yaml")
# A variant of a model made by params alone, as a person adds one: the shared projects train it too.
VARIANT = "mlp_wide"
VARIANT_PARAMS = {**PARAMS["train"]["mlp"], "architecture": "mlp", "hidden": 512}
MODELS = [*PARAMS["train"], VARIANT]  # the models of the shared projects
SWEPT_MODELS = list(PARAMS.get("sweep", {}))  # the models with a sweep stage
KEYS = {"${datasets}": list(PARAMS["datasets"]), "${train}": MODELS, "${sweep}": SWEPT_MODELS}  # of each foreach
STAGES = {name if "foreach" not in stage else f"{name}@{key}"
          for name, stage in DVC_YAML["stages"].items() for key in KEYS.get(stage.get("foreach"), [None])}
# A sweep the tiny data can hold: 4 trials of 2 epochs, 100 of the 500 training images held out.
TINY_SWEEP = {"dataset": "fashion-mnist", "validation_size": 100, "seed": 0, "sample": 0,
              "grid": {"lr": [0.1, 0.5], "epochs": [2], "batch_size": [50], "weight_decay": [0, 0.001],
                       "schedule": ["cosine"]}}


# A user's shell that exports numerics settings of its own (for another program): whatever runs
# the project must pin its numerics itself (regression.numerics), as the test process did on
# importing the package; none of the test process's pinning reaches the commands tests run.
USER_NUMERICS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "MKL_DYNAMIC": "TRUE",
                 "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AUTO"}


def environment(**extra) -> dict:
    """The environment a user's shell would give DVC: no MLflow/DVC settings leaking from the test
    run, and not the numerics this process pinned but USER_NUMERICS."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "DVC_", "FASHION_MNIST_", "STAGE_TIMINGS"))
           and k not in PINNED_ENVIRONMENT}
    env.update(USER_NUMERICS)
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", MLFLOW_DISABLE_TELEMETRY="true",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com")
    env.update(extra)
    return env


def run(project: Path, *command: str, env: dict | None = None, check: bool = True, timeout: float = 600):
    result = subprocess.run(command, cwd=project, env=env or environment(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def stage_command(stage: str, key: str | None = None) -> list[str]:
    """The command of a stage (of `<stage>@<key>`, for a foreach stage) as dvc.yaml gives it,
    without its PYTHONPATH, for running it by hand."""
    definition = DVC_YAML["stages"][stage]
    command = definition["do"]["cmd"].replace("${key}", key) if key else definition["cmd"]
    if key and "${item.dataset}" in command:
        command = command.replace("${item.dataset}", PARAMS[stage][key]["dataset"])
    return command.removeprefix("PYTHONPATH=src ").split()


def train_command(model: str) -> list[str]:
    return stage_command("train", model)


def expected_files(folder: Path) -> dict:
    """{name: {sha256, bytes}} of the decompressed .gz files in `folder`, as params.yaml lists them."""
    import hashlib

    files = {}
    for path in sorted(folder.glob("*.gz")):
        data = gzip.decompress(path.read_bytes())
        name = path.name.removesuffix(".gz")
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return files


def edit_params(project: Path, edit) -> None:
    """Change params.yaml as DVC's own writer does: what `edit` leaves alone keeps its layout and
    comments, so a project copy's params.yaml is laid out as the committed one."""
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(project / "params.yaml")) as params:
        edit(params)


def make_project(dest: Path, source_url: str, files: dict) -> Path:
    """A git repo holding a copy of the project that downloads from `source_url`, committed."""
    for name in COPIED:
        src, dst = PROJECT / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)

    def tiny_data(params):
        params["datasets"]["fashion-mnist"]["sources"] = [source_url, "file:///nonexistent/fashion-mnist/"]
        params["datasets"]["fashion-mnist"]["files"] = files
        params["sweep"] = {model: TINY_SWEEP for model in SWEPT_MODELS}
        params["train"][VARIANT] = VARIANT_PARAMS
    edit_params(dest, tiny_data)
    # The environment, where .dvc/config finds the page `dvc plots show` fills (ignored by git).
    (dest / ".venv").symlink_to(BIN.parent)
    run(dest, "git", "init", "-q")
    run(dest, "git", "add", "-A")
    run(dest, "git", "commit", "-qm", "project")
    return dest


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def served(folder: Path):
    """The files of `folder` over HTTP on 127.0.0.1: yields the URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def data_server(tmp_path_factory):
    """Tiny Fashion-MNIST .gz files over HTTP on 127.0.0.1; yields (url, expected files)."""
    folder = tmp_path_factory.mktemp("mirror")
    write_tiny_fashion_mnist(folder, n_train=500, n_test=100)
    with served(folder) as url:
        yield url, expected_files(folder)


def snapshot(project: Path) -> dict:
    """What two identical runs must agree on: every output hash in dvc.lock, every metrics file."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    outs = {stage: sorted((o["path"], o["md5"]) for o in entry.get("outs", []))
            for stage, entry in lock["stages"].items()}
    metrics = {str(p.relative_to(project)): p.read_bytes() for p in sorted((project / "metrics").rglob("*"))
               if p.is_file() and ".gitignore" not in p.name}
    return {"outs": outs, "metrics": metrics}


def store_uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


def runs_by_model(client: MlflowClient, experiment: str | None = None) -> dict:
    """{model: [runs of its train stage, oldest first]} of the experiment named, else of every
    experiment of the store (sweeps left out)."""
    found = ([client.get_experiment_by_name(experiment)] if experiment
             else client.search_experiments())
    runs = client.search_runs([e.experiment_id for e in found], order_by=["attributes.start_time ASC"])
    by_model = {}
    for r in runs:
        if r.data.tags.get("dvc.stage", "train@").startswith("train@") and "model" in r.data.tags:
            by_model.setdefault(r.data.tags["model"], []).append(r)
    return by_model


def read_json(path: Path):
    return json.loads(path.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"nothing answered at {url}")
            time.sleep(0.3)


def start_mlflow_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """A real `mlflow server` on 127.0.0.1 over an sqlite store in `folder`, answering: (process, URL).

    It leads its own process group, so a test can kill it with everything it started.
    """
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", server)
    return server, url


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 over an sqlite store of its own; yields its URL."""
    server, url = start_mlflow_server(tmp_path)
    yield url
    stop(server)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """End a server and every process it started (SIGKILL: at once), and reap it."""
    stop_process(process.pid, sig, seconds=0 if sig == signal.SIGKILL else 30)
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory, data_server):
    """The project after one cold `dvc repro` on tiny data: (path, repro output, snapshot).

    Shared by the end-to-end tests, which must not change it: those that run more take a
    `project_copy`.
    """
    url, files = data_server
    path = make_project(tmp_path_factory.mktemp("reproduced") / "project", url, files)
    result = run(path, "dvc", "repro")
    return path, result.stdout + result.stderr, snapshot(path)


def copy_of(reproduced_path: Path, dest: Path) -> Path:
    """A copy of a reproduced project (git repo, DVC cache and outputs) with an empty MLflow store."""
    shutil.copytree(reproduced_path, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("mlflow.db*", "mlartifacts"))
    return dest


@pytest.fixture
def project_copy(reproduced, tmp_path):
    return copy_of(reproduced[0], tmp_path / "project")


# Four queued DVC experiments of softmax_nn, each with its own learning rate (none is
# params.yaml's 0.05, so every run name shows its lr), and two of the linear model, run by
# DVC's queue on 2 workers.
SWEEP_LEARNING_RATES = ("0.1", "0.2", "0.3", "0.4")
LINEAR_LEARNING_RATES = ("0.1", "0.02")


def queue_experiments(project: Path, uri: str | None = None) -> str:
    """Queue the six experiments in `project` and run them (`dvc exp run --run-all -j 2`) against
    the store `uri` (None: no MLFLOW_TRACKING_URI, the project's own); the output."""
    env = environment(PYTHONPATH="src", **({"MLFLOW_TRACKING_URI": uri} if uri else {}))
    queued = run(project, "dvc", "exp", "run", "--queue", "train@softmax_nn",
                 "-S", "datasets.fashion-mnist.validation_size=100", "-S", "train.softmax_nn.epochs=2",
                 "-S", f"train.softmax_nn.lr={','.join(SWEEP_LEARNING_RATES)}", env=env)
    queued_linear = run(project, "dvc", "exp", "run", "--queue", "train@linear",
                        "-S", f"train.linear.lr={','.join(LINEAR_LEARNING_RATES)}", env=env)
    ran = run(project, "dvc", "exp", "run", "--run-all", "-j", "2", env=env, timeout=900)
    return queued.stdout + queued_linear.stdout + ran.stdout + ran.stderr


@pytest.fixture(scope="session")
def swept(reproduced, tmp_path_factory):
    """A copy of the reproduced project after six queued experiments, with no MLFLOW_TRACKING_URI,
    into its own store, which had no `mlflow.db` before: (path, their output). Its store holds 4
    runs of softmax_nn in the experiment of Fashion-MNIST and two of linear in that of the
    synthetic data."""
    path = copy_of(reproduced[0], tmp_path_factory.mktemp("swept") / "project")
    return path, queue_experiments(path)
