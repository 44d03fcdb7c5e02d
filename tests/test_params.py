"""regression.params: params.yaml is checked in full, and a bad value stops a stage in one message."""

import copy
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from regression.params import MODEL_DATASETS, ParamsError, load_params

ROOT = Path(__file__).resolve().parent.parent
PARAMS_YAML = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def project_params() -> dict:
    return yaml.safe_load(PARAMS_YAML.read_text())


def write_params(folder: Path, params: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_project_params_are_valid(project_params):
    params = load_params(PARAMS_YAML)
    assert set(params.train) == set(project_params["train"])
    assert params.train["softmax_nn"].lr == project_params["train"]["softmax_nn"]["lr"]
    assert params.download.files == project_params["download"]["files"]


def set_value(*keys_and_value):
    """A mutation that sets params[k1][k2]... = value."""
    *keys, value = keys_and_value

    def mutate(params):
        section = params
        for key in keys[:-1]:
            section = section[key]
        section[keys[-1]] = value
    return mutate


def delete(*keys):
    def mutate(params):
        section = params
        for key in keys[:-1]:
            section = section[key]
        del section[keys[-1]]
    return mutate


def add_model(name):
    def mutate(params):
        params["train"][name] = dict(params["train"]["linear"])
    return mutate


# (mutation, dotted key the message must name, text of the bad value it must show)
BAD_PARAMS = {
    "negative lr": (set_value("train", "softmax_nn", "lr", -0.05), "train.softmax_nn.lr", "-0.05"),
    "zero lr": (set_value("train", "linear", "lr", 0.0), "train.linear.lr", "0.0"),
    "zero batch_size": (set_value("train", "softmax_scratch", "batch_size", 0),
                        "train.softmax_scratch.batch_size", "0"),
    "epochs as a string": (set_value("train", "linear", "epochs", "10"), "train.linear.epochs", "'10'"),
    "fractional epochs": (set_value("train", "softmax_nn", "epochs", 2.5), "train.softmax_nn.epochs", "2.5"),
    "lr as a bool": (set_value("train", "softmax_nn", "lr", True), "train.softmax_nn.lr", "True"),
    "negative seed": (set_value("train", "linear", "seed", -1), "train.linear.seed", "-1"),
    "unknown model": (add_model("resnet"), "train.resnet", "'resnet'"),
    "missing key": (delete("train", "softmax_nn", "epochs"), "train.softmax_nn.epochs", "missing"),
    "missing section": (delete("samples"), "samples", "missing"),
    "unknown extra key": (set_value("train", "softmax_nn", "momentum", 0.9),
                          "train.softmax_nn.momentum", "0.9"),
    "unknown section": (set_value("evaluate", {"batch_size": 10}), "evaluate", "{'batch_size': 10}"),
    "wrong dataset for the model": (set_value("train", "linear", "dataset", "fashion-mnist"),
                                    "train.linear.dataset", "'fashion-mnist'"),
    "unknown dataset": (set_value("train", "softmax_nn", "dataset", "mnist"),
                        "train.softmax_nn.dataset", "'mnist'"),
    "bad sha256": (set_value("download", "files", "t10k-labels-idx1-ubyte", "abc123"),
                   "download.files.t10k-labels-idx1-ubyte", "'abc123'"),
    "upper-case sha256": (set_value("download", "files", "train-images-idx3-ubyte", "AB" * 32),
                          "download.files.train-images-idx3-ubyte", "AB" * 32),
    "empty sources": (set_value("download", "sources", []), "download.sources", "[]"),
    "zero timeout": (set_value("download", "timeout_seconds", 0), "download.timeout_seconds", "0"),
    "negative noise": (set_value("generate", "noise_std", -0.01), "generate.noise_std", "-0.01"),
    "no models": (set_value("train", {}), "train", "{}"),
}


@pytest.mark.parametrize("mutate, key, value", BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
def test_bad_value_is_reported_with_its_key_and_value(tmp_path, project_params, mutate, key, value):
    params = copy.deepcopy(project_params)
    mutate(params)
    path = write_params(tmp_path, params)

    with pytest.raises(ParamsError) as caught:
        load_params(path)

    message = str(caught.value)
    assert str(path) in message
    problems = message.splitlines()[1:]
    # Exactly one problem is reported: the one this test made, not a knock-on error.
    assert len(problems) == 1, message
    assert key in problems[0] and value in problems[0], message


def test_every_bad_value_is_reported_at_once(tmp_path, project_params):
    params = copy.deepcopy(project_params)
    params["train"]["linear"]["lr"] = -1.0
    params["samples"]["count"] = "ten"
    message = str(pytest.raises(ParamsError, load_params, write_params(tmp_path, params)).value)
    assert "train.linear.lr = -1.0" in message
    assert "samples.count = 'ten'" in message


def test_unknown_model_message_lists_the_known_ones(tmp_path, project_params):
    params = copy.deepcopy(project_params)
    add_model("resnet")(params)
    message = str(pytest.raises(ParamsError, load_params, write_params(tmp_path, params)).value)
    assert all(name in message for name in MODEL_DATASETS)


@pytest.mark.parametrize("text", ["train: [\n", "", "- just\n- a list\n"], ids=["bad-yaml", "empty", "list"])
def test_unusable_file_raises_params_error(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match="params.yaml"):
        load_params(path)


def test_missing_file_raises_params_error(tmp_path):
    with pytest.raises(ParamsError, match="cannot read params"):
        load_params(tmp_path / "params.yaml")


@pytest.fixture
def project_copy(tmp_path, project_params):
    """The code of the project in a temp folder, without data, models or an MLflow store."""
    root = tmp_path / "project"
    root.mkdir()
    for folder in ("src", "stages"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    write_params(root, project_params)
    return root


def run_stage(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "DVC_", "FASHION_MNIST_"))}
    env |= {"PYTHONPATH": "src", "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def mlflow_runs(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
        return connection.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0


def test_stage_with_a_bad_param_fails_cleanly_before_any_work(project_copy, project_params):
    params = copy.deepcopy(project_params)
    params["train"]["softmax_nn"]["lr"] = -0.5
    write_params(project_copy, params)

    result = run_stage(project_copy, "stages/train.py", "softmax_nn")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    naming = [line for line in result.stderr.splitlines() if "train.softmax_nn.lr" in line]
    assert len(naming) == 1 and "-0.5" in naming[0], result.stderr
    assert not (project_copy / "models").exists()
    assert not (project_copy / "metrics").exists()
    assert mlflow_runs(project_copy / "mlflow.db") == 0


def test_stage_with_an_unknown_model_names_the_known_ones(project_copy):
    result = run_stage(project_copy, "stages/train.py", "no_such_model")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no_such_model" in result.stderr
    assert all(name in result.stderr for name in MODEL_DATASETS)
    assert not (project_copy / "models").exists()
    assert mlflow_runs(project_copy / "mlflow.db") == 0
