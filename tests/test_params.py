"""regression.params: params.yaml read as DVC reads it, checked in full; a bad value stops a stage at once."""

import copy
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from projects import train_command
from regression.models import MODELS
from regression.data import GENERATED, kind
from regression.params import (ParamsError, check_entry, check_unread, committed_params, dataset_problems, load_params,
                               load_section, read_yaml)
from regression.stage import KEPT, way_back

ROOT = Path(__file__).resolve().parent.parent
PARAMS_YAML = ROOT / "params.yaml"
# The train stage's command line for softmax_nn, as dvc.yaml writes it, after the model's name.
TRAIN_ARGS = train_command("softmax_nn")[3:]


@pytest.fixture(scope="module")
def project_params() -> dict:
    return read_yaml(PARAMS_YAML)


def write_params(folder: Path, params: dict) -> Path:
    path = folder / "params.yaml"
    text = io.StringIO()
    YAML(typ="safe", pure=True).dump(params, text)
    path.write_text(text.getvalue())
    return path


def problems_of(path: Path, models=MODELS) -> list[str]:
    """The problem lines of the ParamsError that loading `path` must raise."""
    with pytest.raises(ParamsError) as caught:
        load_params(path, models=models)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid params:\n"), message
    return message.splitlines()[1:]


def test_project_params_are_valid(project_params):
    params = load_params(PARAMS_YAML, models=MODELS)
    assert set(params.train) == set(MODELS)
    for name, p in params.train.items():
        assert kind(p.dataset) == MODELS[name].takes
        assert p.lr == project_params["train"][name]["lr"]
    row = params.datasets[FM]
    assert {name: f.model_dump() for name, f in row.files.items()} == project_params["datasets"][FM]["files"]
    assert row.validation_size == project_params["datasets"][FM]["validation_size"]


@pytest.mark.parametrize("written", ["1e-3", "1.0e-3", "1E-3"])
def test_lr_in_exponent_notation_is_a_float(tmp_path, project_params, written):
    """YAML 1.1 readers (PyYAML) take `1e-3` for a string; DVC, and so this project, read YAML 1.2."""
    text = PARAMS_YAML.read_text()
    assert "    lr: 0.05\n" in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("    lr: 0.05\n", f"    lr: {written}\n", 1))

    params = load_params(path, models=MODELS)

    first_model = next(iter(project_params["train"]))
    assert params.train[first_model].lr == 0.001
    assert isinstance(params.train[first_model].lr, float)


def test_largest_seed_is_accepted(tmp_path, project_params):
    params = copy.deepcopy(project_params)
    params["train"]["linear"]["seed"] = 2 ** 64 - 1  # what torch.Generator.manual_seed takes
    assert load_params(write_params(tmp_path, params)).train["linear"].seed == 2 ** 64 - 1


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


def add_model(name, copy_of="linear", **changes):
    def mutate(params):
        params["train"][name] = dict(params["train"][copy_of]) | changes
    return mutate


def add_section(name, copy_of):
    def mutate(params):
        params[name] = copy.deepcopy(params[copy_of])
    return mutate


LABELS = "t10k-labels-idx1-ubyte"
FM = "fashion-mnist"  # the project's row of `datasets`
ROW = ("datasets", FM)

# (mutation, dotted key the message must name, text of the bad value it must show)
BAD_PARAMS = {
    "negative lr": (set_value("train", "softmax_nn", "lr", -0.05), "train.softmax_nn.lr", "-0.05"),
    "zero lr": (set_value("train", "linear", "lr", 0.0), "train.linear.lr", "0.0"),
    "NaN lr": (set_value("train", "linear", "lr", float("nan")), "train.linear.lr", "nan"),
    "infinite lr": (set_value("train", "linear", "lr", float("inf")), "train.linear.lr", "inf"),
    "zero batch_size": (set_value("train", "softmax_scratch", "batch_size", 0),
                        "train.softmax_scratch.batch_size", "0"),
    "epochs as a string": (set_value("train", "linear", "epochs", "10"), "train.linear.epochs", "'10'"),
    "fractional epochs": (set_value("train", "softmax_nn", "epochs", 2.5), "train.softmax_nn.epochs", "2.5"),
    "lr as a bool": (set_value("train", "softmax_nn", "lr", True), "train.softmax_nn.lr", "True"),
    "negative seed": (set_value("train", "linear", "seed", -1), "train.linear.seed", "-1"),
    "seed of 2**64": (set_value("train", "linear", "seed", 2 ** 64), "train.linear.seed", str(2 ** 64)),
    "validation seed of 2**64": (set_value(*ROW, "seed", 2 ** 64), f"datasets.{FM}.seed", str(2 ** 64)),
    "negative validation_size": (set_value(*ROW, "validation_size", -1),
                                 f"datasets.{FM}.validation_size", "-1"),
    "unknown model": (add_model("resnet"), "train.resnet", "'resnet'"),
    "missing key": (delete("train", "softmax_nn", "epochs"), "train.softmax_nn.epochs", "missing"),
    "missing section": (delete("samples"), "samples", "missing"),
    "unknown extra key": (set_value("train", "softmax_nn", "momentum", 0.9),
                          "train.softmax_nn.momentum", "0.9"),
    "unknown section": (set_value("evaluate", {"batch_size": 10}), "evaluate", "{'batch_size': 10}"),
    "misspelled section beside the right one": (add_section("trian", "train"), "trian",
                                                "did you mean 'train'?"),
    "misspelled key": (set_value(*ROW, "validaton_size", 5), f"datasets.{FM}.validaton_size",
                       "did you mean 'validation_size'?"),
    "wrong kind of dataset for the model": (set_value("train", "linear", "dataset", FM),
                                            "train.linear.dataset", f"'{FM}': architecture linear takes features"),
    "unknown dataset": (set_value("train", "softmax_nn", "dataset", "mnist"),
                        "train.softmax_nn.dataset", "'mnist': no such dataset"),
    "a sweep's unknown dataset": (set_value("sweep", "mlp", "dataset", "mnist"), "sweep.mlp.dataset", "'mnist'"),
    "a sweep's wrong kind of dataset": (set_value("sweep", "mlp", "dataset", GENERATED), "sweep.mlp.dataset",
                                        "takes images"),
    "split naming no file": (set_value(*ROW, "splits", "test", 1, "t10k-labels"), f"datasets.{FM}",
                             "splits name t10k-labels, not in its files"),
    "a split of one file": (set_value(*ROW, "splits", "test", [LABELS]), f"datasets.{FM}.splits.test",
                            "at least 2 items"),
    "one class": (set_value(*ROW, "classes", ["Coat"]), f"datasets.{FM}.classes", "['Coat']"),
    "a class twice": (set_value(*ROW, "classes", ["Coat", "Coat"]), f"datasets.{FM}.classes", "values repeat"),
    "a bad variable name": (set_value(*ROW, "source_env", "FASHION-MNIST"), f"datasets.{FM}.source_env",
                            "'FASHION-MNIST'"),
    "bad sha256": (set_value(*ROW, "files", LABELS, "sha256", "abc123"),
                   f"datasets.{FM}.files.{LABELS}.sha256", "'abc123'"),
    "upper-case sha256": (set_value(*ROW, "files", "train-images-idx3-ubyte", "sha256", "AB" * 32),
                          f"datasets.{FM}.files.train-images-idx3-ubyte.sha256", "AB" * 32),
    "sha256 alone, as before sizes": (set_value(*ROW, "files", LABELS, "0" * 64),
                                      f"datasets.{FM}.files.{LABELS}", "0" * 64),
    "zero bytes": (set_value(*ROW, "files", LABELS, "bytes", 0), f"datasets.{FM}.files.{LABELS}.bytes", "0"),
    "bytes as a string": (set_value(*ROW, "files", LABELS, "bytes", "10008"),
                          f"datasets.{FM}.files.{LABELS}.bytes", "'10008'"),
    "missing file": (delete(*ROW, "files", LABELS), f"datasets.{FM}", f"splits name {LABELS}, not in its files"),
    "a file of no split": (set_value(*ROW, "files", "t10k-labels", {"sha256": "0" * 64, "bytes": 1}),
                           f"datasets.{FM}", "files hold t10k-labels, in none of its splits"),
    "malformed source URL": (set_value(*ROW, "sources", 0, "http://[::1/"),
                             f"datasets.{FM}.sources.0", "'http://[::1/'"),
    "source URL with a bad port": (set_value(*ROW, "sources", 0, "http://example.org:99999/"),
                                   f"datasets.{FM}.sources.0", "'http://example.org:99999/'"),
    "ftp source": (set_value(*ROW, "sources", 1, "ftp://example.org/fashion/"),
                   f"datasets.{FM}.sources.1", "'ftp://example.org/fashion/'"),
    "source as a bare path": (set_value(*ROW, "sources", 0, "/srv/fashion-mnist"),
                              f"datasets.{FM}.sources.0", "'/srv/fashion-mnist'"),
    "empty sources": (set_value(*ROW, "sources", []), f"datasets.{FM}.sources", "[]"),
    "zero timeout": (set_value(*ROW, "timeout_seconds", 0), f"datasets.{FM}.timeout_seconds", "0"),
    "negative noise": (set_value("generate", "noise_std", -0.01), "generate.noise_std", "-0.01"),
    "no models": (set_value("train", {}), "train", "{}"),
    "an architecture's param under another": (set_value("train", "linear", "hidden", 256),
                                               "train.linear.hidden = 256", "unknown key"),
    "an architecture's param missing": (delete("train", "mlp", "hidden"), "train.mlp.hidden", "missing key"),
    "an architecture's param out of range": (set_value("train", "mlp", "hidden", 0), "train.mlp.hidden", "0"),
    "a misspelled architecture's param": (set_value("train", "mlp", "hiden", 512), "train.mlp.hiden = 512",
                                          "unknown key (did you mean 'hidden'?)"),
    "an unknown architecture": (set_value("train", "mlp", "architecture", "cnn"), "train.mlp.architecture",
                                "'cnn': unknown architecture"),
    "a variant without its architecture": (add_model("mlp_wide", copy_of="mlp"), "train.mlp_wide",
                                           "name one with `architecture:`"),
}


@pytest.mark.parametrize("mutate, key, value", BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
def test_bad_value_is_reported_in_one_line_with_its_key_and_value(tmp_path, project_params, mutate, key,
                                                                  value):
    params = copy.deepcopy(project_params)
    mutate(params)

    problems = problems_of(write_params(tmp_path, params))

    # Exactly one problem is reported: the one this test made, not a knock-on error.
    assert len(problems) == 1, problems
    assert key in problems[0] and value in problems[0], problems


def test_misspelled_section_is_named_with_a_hint(tmp_path, project_params):
    params = copy.deepcopy(project_params)
    params["trian"] = params.pop("train")

    problems = problems_of(write_params(tmp_path, params))

    assert problems[0] == "  train: missing key"
    assert problems[1].startswith("  trian = {") and problems[1].endswith("(did you mean 'train'?)")
    assert len(problems) == 2


def test_misspelled_key_of_a_model_gets_a_hint(tmp_path, project_params):
    params = copy.deepcopy(project_params)
    params["train"]["linear"]["epoch"] = params["train"]["linear"].pop("epochs")

    problems = problems_of(write_params(tmp_path, params))

    assert any("train.linear.epoch = 10" in line and "did you mean 'epochs'?" in line for line in problems)


def test_missing_file_line_is_keyed_by_its_dataset_and_short(tmp_path, project_params):
    params = copy.deepcopy(project_params)
    del params["datasets"][FM]["files"][LABELS]

    [problem] = problems_of(write_params(tmp_path, params))

    assert problem.startswith(f"  datasets.{FM}")
    assert "sources" not in problem and len(problem) < 200, problem


@pytest.mark.parametrize("mutate", [
    add_model("resnet"), set_value("train", "linear", "dataset", FM),
], ids=["unknown model", "wrong dataset for the model"])
def test_model_names_are_checked_only_against_a_given_table(tmp_path, project_params, mutate):
    """The stages that do not train load params without the model table (and without torch)."""
    params = copy.deepcopy(project_params)
    mutate(params)
    path = write_params(tmp_path, params)

    load_params(path)
    assert len(problems_of(path, models=MODELS)) == 1


def test_a_variant_is_params_alone_and_its_architecture_s_params_are_its_own(tmp_path, project_params):
    params = copy.deepcopy(project_params)
    add_model("mlp_wide", copy_of="mlp", architecture="mlp", hidden=512)(params)
    path = write_params(tmp_path, params)

    loaded = load_params(path, models=MODELS)
    assert loaded.train["mlp_wide"].architecture == "mlp" and loaded.train["mlp_wide"].hidden == 512
    assert loaded.train["mlp"].architecture == "mlp"  # by default, the entry's own key
    assert load_section(path, "train.mlp_wide", models=MODELS).train["mlp_wide"].hidden == 512
    assert not hasattr(loaded.train["linear"], "hidden")


def test_every_bad_value_is_reported_at_once(tmp_path, project_params):
    params = copy.deepcopy(project_params)
    params["train"]["linear"]["lr"] = -1.0
    params["samples"]["count"] = "ten"
    params["datasets"][FM]["seed"] = 2 ** 64
    problems = problems_of(write_params(tmp_path, params))
    assert len(problems) == 3, problems
    assert any(line.startswith("  train.linear.lr = -1.0:") for line in problems)
    assert any(line.startswith("  samples.count = 'ten':") for line in problems)
    assert any(line.startswith(f"  datasets.{FM}.seed = {2 ** 64}:") for line in problems)


def test_unknown_model_message_lists_the_known_ones(tmp_path, project_params):
    params = copy.deepcopy(project_params)
    add_model("resnet")(params)
    [problem] = problems_of(write_params(tmp_path, params))
    assert all(name in problem for name in MODELS)


def test_every_architecture_takes_a_kind_of_data_a_dataset_holds(project_params):
    kinds = {kind(name) for name in [*project_params["datasets"], GENERATED]}
    assert {spec.takes for spec in MODELS.values()} == kinds


@pytest.mark.parametrize("text", ["train: [\n", "", "- just\n- a list\n", "a: 1\na: 2\n"],
                         ids=["bad-yaml", "empty", "list", "duplicate-key"])
def test_unusable_file_raises_params_error(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=str(path)):
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
           if not k.startswith(("MLFLOW_", "DVC_", "FASHION_MNIST_", "STAGE_TIMINGS"))}
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


def assert_failed_before_any_work(result: subprocess.CompletedProcess, root: Path) -> None:
    """Exit 1 with one `error:` line and no traceback; no output and no MLflow run."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1, result.stderr
    assert not (root / "models").exists()
    assert not (root / "metrics").exists()
    assert mlflow_runs(root / "mlflow.db") == 0


@pytest.mark.parametrize("model, mutate, key, value", [
    ("softmax_nn", set_value("train", "softmax_nn", "lr", -0.5), "train.softmax_nn.lr", "-0.5"),
    ("resnet", add_model("resnet"), "train.resnet", "'resnet'"),
], ids=["negative lr", "unknown model in params"])
def test_stage_with_a_bad_param_fails_cleanly_before_any_work(project_copy, project_params, model, mutate,
                                                              key, value):
    params = copy.deepcopy(project_params)
    mutate(params)
    write_params(project_copy, params)

    result = run_stage(project_copy, "stages/train.py", model, *TRAIN_ARGS)

    assert_failed_before_any_work(result, project_copy)
    naming = [line for line in result.stderr.splitlines() if key in line]
    assert len(naming) == 1 and value in naming[0], result.stderr


def test_stage_with_an_unknown_model_names_the_known_ones(project_copy):
    result = run_stage(project_copy, "stages/train.py", "no_such_model", *TRAIN_ARGS)

    assert_failed_before_any_work(result, project_copy)
    # one line, and the way back when params.yaml differs from the commit (regression.stage.way_back)
    assert len([line for line in result.stderr.strip().splitlines() if not line.startswith(KEPT)]) == 1, result.stderr
    assert "no_such_model" in result.stderr
    assert all(name in result.stderr for name in MODELS)


# Each stage checks the params it owns


def problems_of_section(path: Path, key: str) -> list[str]:
    with pytest.raises(ParamsError) as caught:
        load_section(path, key, models=MODELS)
    return str(caught.value).splitlines()[1:]


@pytest.mark.parametrize("mutate, owner, key", [
    (set_value("train", "softmax_nn", "lr", -0.05), "train.softmax_nn", "train.softmax_nn.lr"),
    (set_value("train", "linear", "dataset", FM), "train.linear", "train.linear.dataset"),
    (set_value(*ROW, "validaton_size", 5), f"datasets.{FM}", f"datasets.{FM}.validaton_size"),
    (delete("samples"), "samples", "samples"),
    (set_value(*ROW, "timeout_seconds", 0), f"datasets.{FM}", f"datasets.{FM}.timeout_seconds"),
], ids=["a model's lr", "a model's dataset", "misspelled key", "missing section", "download"])
def test_a_bad_key_is_reported_by_its_stage_alone(tmp_path, project_params, mutate, owner, key):
    params = copy.deepcopy(project_params)
    mutate(params)
    path = write_params(tmp_path, params)

    [problem] = problems_of_section(path, owner)

    assert problem.startswith(f"  {key}")
    others = [f"datasets.{FM}", "generate", "samples", *(f"train.{m}" for m in params.get("train", {}))]
    for other in others:
        if other != owner:
            load_section(path, other, models=MODELS)  # every other stage goes on


def test_a_stage_gets_its_own_section_only(tmp_path):
    params = load_section(PARAMS_YAML, "train.linear", models=MODELS)
    assert list(params.train) == ["linear"] and params.train["linear"].dataset == "synthetic"
    assert load_section(PARAMS_YAML, "samples").samples.count > 0
    with pytest.raises(AttributeError):
        params.datasets  # noqa: B018 - not the train stage's


def test_a_stage_checks_the_files_syntax(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_YAML.read_text() + "trian: [\n")
    with pytest.raises(ParamsError, match="cannot read params"):
        load_section(path, f"datasets.{FM}")


def test_a_model_missing_from_params_is_named_with_the_ones_there():
    with pytest.raises(ParamsError, match=r"train.resnet: not in params.yaml \(its models: linear, "):
        load_section(PARAMS_YAML, "train.resnet", models=MODELS)


def test_a_section_no_stage_reads_is_refused_with_a_hint(tmp_path, project_params):
    check_unread(project_params)
    params = copy.deepcopy(project_params)
    add_section("trian", "train")(params)
    path = write_params(tmp_path, params)
    for stage in (f"datasets.{FM}", "train.linear"):
        load_section(path, stage, models=MODELS)  # no stage reads it, so none would say a word

    with pytest.raises(ParamsError) as caught:
        check_unread(read_yaml(path), path)
    [problem] = str(caught.value).splitlines()[1:]
    assert problem.startswith("  trian = {") and "no stage reads it" in problem
    assert problem.endswith("(did you mean 'train'?)")

    # The params stage, which every other stage waits for, refuses it, and loads no torch to do so.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "stages" / "params.py"), "out"],
                            capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert errors == ["error: params.yaml: invalid params:", problem], errors
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "regression.params" in imported and "torch" not in imported
    assert not (tmp_path / "out").exists()


def test_a_sweeps_trial_is_checked_as_its_models_entry(project_params):
    """What the sweep stage does with each trial: its params, typed, or a ParamsError naming the
    file and each bad key."""
    entry = project_params["train"]["softmax_nn"]
    datasets = [FM, GENERATED]
    checked = check_entry("softmax_nn", entry | {"lr": 0.25}, MODELS, datasets)
    assert (checked.architecture, checked.lr, checked.epochs) == ("softmax_nn", 0.25, entry["epochs"])
    with pytest.raises(ParamsError) as caught:
        check_entry("softmax_nn", entry | {"lr": -1, "epochs": "many"}, MODELS, datasets, "sweep/params.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "sweep/params.yaml: invalid params:"
    assert [line.split(":")[0] for line in lines[1:]] == ["  train.softmax_nn.lr = -1",
                                                           "  train.softmax_nn.epochs = 'many'"]
    with pytest.raises(ParamsError, match="^params.yaml: invalid params:\n  train.softmax_nn.lr = 0: "):
        check_entry("softmax_nn", entry | {"lr": 0}, MODELS, datasets)
    with pytest.raises(ParamsError, match="train.softmax_nn.hidden = 32: unknown key"):  # the MLP's, not its
        check_entry("softmax_nn", entry | {"hidden": 32}, MODELS, datasets)


def test_a_stage_whose_section_is_missing_is_told_so_naming_the_file(tmp_path, project_params):
    path = write_params(tmp_path, {key: value for key, value in project_params.items() if key != "samples"})
    with pytest.raises(ParamsError) as caught:
        load_section(path, "samples")
    assert str(caught.value) == f"{path}: invalid params:\n  samples: missing key"


def test_a_sweep_stage_gets_its_models_sweep_checked(tmp_path, project_params):
    params = load_section(PARAMS_YAML, "sweep.softmax_nn")
    assert params.sweep["softmax_nn"].grid.lr == project_params["sweep"]["softmax_nn"]["grid"]["lr"]
    path = write_params(tmp_path, project_params | {"sweep": ["softmax_nn"]})  # a list, not a table
    with pytest.raises(ParamsError) as caught:
        load_section(path, "sweep.softmax_nn")
    assert str(caught.value) == "sweep.softmax_nn: not in params.yaml (its models: none)"


def test_a_bad_train_entry_is_reported_naming_the_file(tmp_path, project_params):
    train = project_params["train"] | {"softmax_nn": project_params["train"]["softmax_nn"] | {"lr": -1}}
    path = write_params(tmp_path, project_params | {"train": train})
    with pytest.raises(ParamsError) as caught:
        load_section(path, "train.softmax_nn", models=MODELS)
    assert str(caught.value).startswith(f"{path}: invalid params:\n  train.softmax_nn.lr = -1: ")


def edited(tmp_path, project_params, edit) -> Path:
    """A params.yaml: the project's, with `edit(params)` applied."""
    params = json.loads(json.dumps(project_params))
    edit(params)
    return write_params(tmp_path, params)


KNOWN = "known architectures: linear, softmax_scratch, softmax_nn, mlp"


@pytest.mark.parametrize("key, edit, problem", [
    (f"datasets.{FM}", lambda p: p["datasets"][FM].update(timeout_second=p["datasets"][FM].pop("timeout_seconds")),
     f"  datasets.{FM}.timeout_second = 30: unknown key (did you mean 'timeout_seconds'?)"),
    (f"datasets.{FM}", lambda p: p["datasets"][FM].update(timeout_seconds="30"),  # quoted: text, not a number
     f"  datasets.{FM}.timeout_seconds = '30': Input should be a valid number"),
    ("train.softmax_nn", lambda p: p["train"]["softmax_nn"].update(dataset="mnist"),
     f"  train.softmax_nn.dataset = 'mnist': no such dataset (datasets: {FM}, {GENERATED}); name one, or add "
     "its row to `datasets`"),
    ("train.softmax_nn", lambda p: p["train"]["softmax_nn"].update(dataset=GENERATED),
     f"  train.softmax_nn.dataset = '{GENERATED}': architecture softmax_nn takes images, {GENERATED} holds "
     f"features (datasets of images: {FM})"),
    ("train.softmax_nn", lambda p: p["train"]["softmax_nn"].update(lr="0.1"),
     "  train.softmax_nn.lr = '0.1': Input should be a valid number"),
    ("train.softmax_nn", lambda p: p["train"]["softmax_nn"].update(architecture="resnet"),
     f"  train.softmax_nn.architecture = 'resnet': unknown architecture 'resnet' ({KNOWN})"),
    ("train.mlp", lambda p: p["train"]["mlp"].update(architecture=["mlp"]),  # a list where a name belongs
     f"  train.mlp.architecture = ['mlp']: not a name; name one architecture ({KNOWN})"),
    (None, lambda p: p["train"].update(resnet=p["train"]["softmax_nn"]),
     f"  train.resnet: unknown architecture 'resnet' (name one with `architecture:`; {KNOWN})"),
    (None, lambda p: p["sweep"].update(lenet=p["sweep"]["softmax_nn"]),
     "  sweep.lenet: no train.lenet to search around (models in train: {models})"),  # in the file's order
], ids=["misspelt-key", "quoted-number", "unknown-dataset", "wrong-kind-of-dataset", "quoted-lr", "unknown-architecture", "architecture-list",
         "unknown-model-name",
        "sweep-of-no-model"])
def test_each_problem_is_one_line_saying_what_to_do(tmp_path, project_params, key, edit, problem):
    path = edited(tmp_path, project_params, edit)
    with pytest.raises(ParamsError) as caught:
        if key:
            load_section(path, key, models=MODELS)
        else:
            load_params(path, models=MODELS)
    problem = problem.format(models=", ".join(read_yaml(path)["train"]))
    assert problem in str(caught.value).splitlines()[1:], str(caught.value)
    assert str(caught.value).startswith(f"{path}: invalid params:\n")


def test_the_params_keep_the_file_as_read():
    """For the check that every section is read by some stage (`check_unread`)."""
    as_read = read_yaml(PARAMS_YAML)
    assert load_params(PARAMS_YAML, models=MODELS).file == as_read
    assert load_section(PARAMS_YAML, f"datasets.{FM}").file == as_read


def test_a_file_that_cannot_be_read_or_is_no_table_is_one_line_saying_why(tmp_path):
    missing, broken, listed = tmp_path / "missing.yaml", tmp_path / "broken.yaml", tmp_path / "listed.yaml"
    broken.write_text("train: [\n  a: 1\n")
    listed.write_text("- datasets\n- train\n")
    with pytest.raises(ParamsError) as caught:
        load_params(missing)
    assert str(caught.value).startswith(f"{missing}: cannot read params: [Errno 2] No such file or directory")
    with pytest.raises(ParamsError) as caught:
        load_params(broken)
    message = str(caught.value)
    assert message.startswith(f"{broken}: cannot read params: ") and "\n" not in message
    assert "  " not in message.split(": cannot read params: ")[1]  # the parser's lines joined by a space
    with pytest.raises(ParamsError) as caught:
        load_params(listed)
    assert str(caught.value) == (f"{listed}: invalid params:\n"
                                 "  not a mapping of sections but list: ['datasets', 'train']")


def test_the_way_back_names_the_refused_keys_committed_values_and_keeps_other_edits(tmp_path, monkeypatch):
    """`git checkout HEAD params.yaml` would also throw away a valid edit made beside the refused one."""
    committed = {"train": {"softmax_nn": {"lr": 0.05, "schedule": "constant"}, "mlp": {"lr": 0.1}},
                 "generate": {"true_w": [2.0, -3.4]}}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(committed))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t",
                                                                   "commit", "-qm", "params"]):
        subprocess.run(command, check=True)
    assert way_back("train.softmax_nn") is None  # nothing changed
    edited = yaml.safe_load(yaml.safe_dump(committed))
    edited["train"]["softmax_nn"] |= {"lr": -0.5, "schedule": "cosine"}
    edited["train"]["mlp"]["lr"] = 0.2  # another model's edit, to keep
    edited["train"]["mlp_wide"] = {"architecture": "mlp", "hidden": 0}
    edited["generate"]["true_w"] = [1.0, 1.0]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(edited))
    assert way_back("train.softmax_nn") == (
        f"{KEPT}; `dvc exp run -S train.softmax_nn.lr=0.05 -S train.softmax_nn.schedule=constant` puts back "
        "train.softmax_nn.lr, train.softmax_nn.schedule as committed and keeps your other edits")
    assert way_back("train.softmax_nn").startswith(f"{KEPT}; `dvc exp run -S train.softmax_nn.lr=0.05 ")
    assert way_back("train.mlp_wide") == (f"{KEPT}; train.mlp_wide.architecture, train.mlp_wide.hidden: not in "
                                          "the committed params.yaml; fix or remove it there")
    assert way_back("generate") == (f"{KEPT}; `dvc exp run -S 'generate.true_w=[2.0,-3.4]'` puts back "
                                    "generate.true_w as committed and keeps your other edits")
    assert way_back(None) == way_back("samples") == f"{KEPT}; `git diff HEAD params.yaml` shows your edits"


def test_the_committed_params_are_none_outside_a_git_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("train: {}\n")
    assert committed_params() is None  # so a failed stage adds no way-back line (regression.stage.way_back)
    assert way_back("train.linear") is None


def test_a_dataset_of_the_wrong_kind_names_every_dataset_of_the_right_one():
    problems = dataset_problems("train.x.dataset", GENERATED, ["shapes", FM, GENERATED], "softmax_nn", MODELS)
    assert problems == [f"  train.x.dataset = '{GENERATED}': architecture softmax_nn takes images, {GENERATED} "
                        f"holds features (datasets of images: shapes, {FM})"]
