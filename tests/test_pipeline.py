"""The whole pipeline, for real: `dvc repro`, `dvc exp run` and the queue in a temporary git repo,
on tiny IDX files served over HTTP from 127.0.0.1, tracked in a real MLflow store."""

import pickle
import re
from pathlib import Path

import cloudpickle
import mlflow
import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient

from projects import (
    BIN,
    MODELS,
    PROJECT,
    STAGES,
    VARIANT,
    VARIANT_PARAMS,
    edit_params,
    environment,
    read_json,
    run,
    runs_by_model,
    snapshot,
    stages_run,
    store_uri,
    train_command,
)
from regression.params import read_yaml

pytestmark = pytest.mark.slow


def classifiers(path: Path) -> dict[str, dict]:
    """The project's models that learn from Fashion-MNIST: {name: its params}."""
    return {name: entry for name, entry in read_yaml(path / "params.yaml")["train"].items()
            if entry["dataset"] == "fashion-mnist"}


def test_repro_runs_every_stage_and_meets_targets(reproduced):
    path, output, _ = reproduced
    assert stages_run(output) == STAGES
    assert {"softmax_scratch", "softmax_nn", "mlp", VARIANT} <= set(classifiers(path))
    for model, params in classifiers(path).items():
        metrics = read_json(path / f"metrics/{model}.json")
        assert set(metrics) == {"test_accuracy", "test_loss"}
        assert metrics["test_accuracy"] > 0.9  # the tiny images carry their class in plain sight
        history = read_json(path / f"metrics/{model}/history.json")
        assert [r["epoch"] for r in history] == list(range(1, params["epochs"] + 1))
        assert history[-1]["train_loss"] < history[0]["train_loss"]
        assert history[-1]["test_accuracy"] == metrics["test_accuracy"]  # computed once, at the last epoch
        rows = (path / f"metrics/{model}/evaluation/predictions.csv").read_text().splitlines()
        assert rows[0] == "actual,predicted" and len(rows) == 101
        per_class = read_json(path / f"metrics/{model}/evaluation/per_class_accuracy.json")
        assert [row["class"] for row in per_class][0] == "T-shirt/top" and len(per_class) == 10
        for figure in ("learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png",
                       "test_predictions.png"):
            assert (path / f"metrics/{model}/figures/{figure}").read_bytes().startswith(b"\x89PNG")
    # The variant is the MLP of its own width, rebuilt from its file alone.
    from regression.models import load_model

    variant, config = load_model(path / f"models/{VARIANT}.pt")
    assert (config.architecture, config.params) == ("mlp", {"hidden": VARIANT_PARAMS["hidden"]})
    assert variant.hidden.out_features == VARIANT_PARAMS["hidden"]
    linear = read_json(path / "metrics/linear.json")
    assert set(linear) == {"test_loss", "w_0", "w_1", "b"}  # test_loss: the MSE
    fit = read_json(path / "metrics/linear/evaluation/fit.json")
    assert max(fit["w_err"], fit["b_err"]) < 0.01
    assert (path / "metrics/fashion-mnist-samples.png").read_bytes().startswith(b"\x89PNG")
    assert not list(path.glob("data/.*tmp*")) and not list(path.glob("metrics/**/.*tmp*"))


def test_each_model_stage_records_one_complete_mlflow_run(reproduced):
    path, _, _ = reproduced
    client = MlflowClient(store_uri(path))
    by_model = runs_by_model(client)
    head = run(path, "git", "rev-parse", "HEAD").stdout.strip()
    assert set(by_model) == set(MODELS)
    params = read_yaml(path / "params.yaml")["train"]
    for model, runs in by_model.items():
        assert len(runs) == 1, f"{model}: {len(runs)} runs"
        r, p = runs[0], params[model]
        assert r.info.status == "FINISHED"
        assert re.fullmatch(rf"{model} @ {head[:7]} \d\d:\d\d:\d\d", r.info.run_name), r.info.run_name
        assert r.data.params["lr"] == str(p["lr"]) and r.data.params["batch_size"] == str(p["batch_size"])
        assert r.data.params["architecture"] == p.get("architecture", model)
        assert r.data.params.get("hidden") == (str(p["hidden"]) if "hidden" in p else None)
        assert r.data.tags["dvc.stage"] == f"train@{model}"
        assert r.data.tags["mlflow.source.git.commit"] == head
        assert f"| lr | {p['lr']} |" in r.data.tags["mlflow.note.content"]
        epochs = list(range(1, p["epochs"] + 1))
        history = client.get_metric_history(r.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == epochs
        final = "test_loss"
        assert [m.step for m in client.get_metric_history(r.info.run_id, final)] == epochs
        inputs = {i.dataset.name: i.dataset for i in r.inputs.dataset_inputs}
        dataset = "synthetic" if model == "linear" else "fashion-mnist"
        assert set(inputs) == {f"{dataset}-train", f"{dataset}-test"}
        assert {d.digest for d in inputs.values()} == {r.data.tags["data.digest"]}
        [logged] = r.outputs.model_outputs
        model_metrics = {m.key: m for m in client.get_logged_model(logged.model_id).metrics}
        assert {"test_loss", "train_loss"} <= set(model_metrics)
        assert model_metrics["test_loss"].dataset_name == f"{dataset}-test"
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "evaluation")}
        assert "evaluation/predictions.csv" in artifacts
        if model != "linear":
            assert {"evaluation/confusion_matrix.png", "evaluation/test_predictions.png"} <= artifacts
        [version] = [v for v in client.search_model_versions(f"name = '{dataset}-{model}'")
                     if v.run_id == r.info.run_id]
        assert version.tags["run_name"] == r.info.run_name  # the version names the run it came from
        assert version.tags["data.digest"] == r.data.tags["data.digest"]


class Unpickled(Exception):
    """Something was unpickled while unpickling was refused."""


def refuse_unpickling(monkeypatch) -> None:
    """Make every unpickler raise: pickle's and cloudpickle's load/loads (MLflow's pickled models)
    and pickle.Unpickler (torch.load without weights_only). torch's weights-only loader has an
    unpickler of its own, which runs no code, and is left alone."""
    def refuse(*args, **kwargs):
        raise Unpickled

    class RefusingUnpickler:
        def __init__(self, *args, **kwargs):
            raise Unpickled

    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "load", refuse)
        monkeypatch.setattr(module, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


def test_logged_model_loads_without_pickle_and_answers_with_class_names(reproduced, tmp_path, monkeypatch):
    path, _, _ = reproduced
    mlflow.set_tracking_uri(store_uri(path))
    uri = "models:/fashion-mnist-softmax_nn/1"
    requirements = mlflow.pyfunc.get_model_dependencies(uri)
    pinned = {line.split("==")[0] for line in Path(requirements).read_text().splitlines() if "==" in line}
    assert {"mlflow", "torch", "numpy", "pandas"} <= pinned
    logged = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "logged")))
    flavor = yaml.safe_load((logged / "MLmodel").read_text())["flavors"]["python_function"]
    assert "model_code_path" in flavor and "python_model" not in flavor  # code, not a pickled object
    assert not [p for p in logged.rglob("*") if p.suffix in (".pkl", ".pickle")]

    with monkeypatch.context() as refused:
        refuse_unpickling(refused)
        model = mlflow.pyfunc.load_model(uri)
        X = np.load(path / "data/fashion-mnist/test_X.npy")[:20].reshape(20, -1) / 255.0
        answers = model.predict(X)
    predicted = [row.split(",")[1] for row in
                 (path / "metrics/softmax_nn/evaluation/predictions.csv").read_text().splitlines()[1:21]]
    assert list(answers["class"]) == predicted
    assert all(abs(sum(p.values()) - 1) < 1e-6 for p in answers["probabilities"])

    # Controls: with unpickling refused, a pickled MLflow model and a full torch.load both fail
    # (so the load above could have failed).
    mlflow.pyfunc.save_model(str(tmp_path / "pickled"), python_model=Constant())
    model_file = next((logged / "artifacts").rglob("*.pt"))
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    refuse_unpickling(monkeypatch)
    with pytest.raises(Unpickled):
        mlflow.pyfunc.load_model(str(tmp_path / "pickled"))
    with pytest.raises(Unpickled):
        torch.load(model_file, weights_only=False)


def test_second_repro_runs_nothing(reproduced):
    path, _, _ = reproduced
    result = run(path, "dvc", "repro")
    assert stages_run(result.stdout) == set()
    assert run(path, "dvc", "status", "--json").stdout.strip() in ("{}", "")


def test_fresh_clone_reproduces_identical_outputs(project_copy, reproduced, tmp_path):
    """A clone of the committed results, with an empty DVC cache, re-trains every model alike."""
    _, _, first = reproduced
    run(project_copy, "git", "add", "-A")
    run(project_copy, "git", "commit", "-qm", "results")
    again = tmp_path / "clone"
    run(project_copy, "git", "clone", "-q", str(project_copy), str(again))
    assert not (again / ".dvc/cache").exists() and not (again / "mlflow.db").exists()
    result = run(again, "dvc", "repro")
    assert {f"train@{m}" for m in MODELS} <= stages_run(result.stdout), result.stdout
    # CI's check after its cold run: the committed dvc.lock and metrics/ re-made byte for byte.
    check = run(again, str(BIN / "python"), str(PROJECT / ".ci" / "check_reproduced.py"), check=False)
    assert check.returncode == 0, check.stderr
    second = snapshot(again)
    assert second["outs"] == first["outs"]
    assert second["metrics"].keys() == first["metrics"].keys()
    for name, data in first["metrics"].items():
        assert second["metrics"][name] == data, f"{name} differs between two cold runs"


def test_exp_run_reruns_only_the_changed_model_and_names_its_run(project_copy):
    result = run(project_copy, "dvc", "exp", "run", "-n", "nn-lr-0.1", "-S", "train.softmax_nn.lr=0.1")
    assert stages_run(result.stdout) == {"params", "train@softmax_nn"}  # the check of params.yaml, and it
    # params.yaml (laid out as the committed one) changed by that one line, as README says.
    diff = run(project_copy, "git", "diff", "-U0", "--", "params.yaml").stdout.splitlines()
    assert [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        "-    lr: 0.05", "+    lr: 0.1"], "\n".join(diff)
    [latest] = runs_by_model(MlflowClient(store_uri(project_copy)))["softmax_nn"]
    assert latest.data.params["lr"] == "0.1"
    assert latest.info.run_name == "softmax_nn lr=0.1 · nn-lr-0.1"
    assert latest.data.tags["dvc.experiment"] == "nn-lr-0.1"
    assert "test_accuracy" in latest.data.metrics


def test_temp_experiment_records_into_the_projects_own_store(project_copy):
    """Without MLFLOW_TRACKING_URI, `dvc exp run --temp` runs in a copy under .dvc/tmp/exps; its
    run, artifacts and model land in the project's mlflow.db and mlartifacts/, not in the copy."""
    run(project_copy, "git", "add", "-A")
    run(project_copy, "git", "commit", "-qm", "results")
    assert "MLFLOW_TRACKING_URI" not in environment()
    result = run(project_copy, "dvc", "exp", "run", "--temp", "-n", "temp-lr", "-S", "train.linear.lr=0.04")
    assert stages_run(result.stdout) == {"params", "train@linear"}
    client = MlflowClient(store_uri(project_copy))
    [r] = runs_by_model(client)["linear"]
    assert r.info.status == "FINISHED" and r.data.tags["dvc.experiment"] == "temp-lr"
    assert r.data.params["lr"] == "0.04"
    assert Path(r.info.artifact_uri.removeprefix("file://")).is_relative_to(project_copy / "mlartifacts")
    assert {a.path for a in client.list_artifacts(r.info.run_id, "evaluation")}
    [version] = client.search_model_versions("name = 'synthetic-linear'")
    assert version.run_id == r.info.run_id
    stores = [p for p in project_copy.rglob("mlflow.db") if p != project_copy / "mlflow.db"]
    assert not stores, stores


def test_tracking_to_an_mlflow_server_over_http(project_copy, mlflow_server):
    env = environment(MLFLOW_TRACKING_URI=mlflow_server, PYTHONPATH="src")
    run(project_copy, *train_command("linear"), env=env)
    mlflow.set_tracking_uri(mlflow_server)
    [r] = runs_by_model(MlflowClient(mlflow_server))["linear"]
    assert r.info.status == "FINISHED" and "test_loss" in r.data.metrics
    model = mlflow.pyfunc.load_model("models:/synthetic-linear/1")
    assert list(model.predict(np.ones((2, 2), dtype=np.float32)).columns) == ["prediction"]


def test_exploding_loss_fails_the_run_before_it_is_nan_and_writes_no_model(project_copy):
    """At lr 5 the linear model's loss grows about 16-fold a batch: finite, but diverged."""
    edit_params(project_copy, lambda p: p["train"]["linear"].update(lr=5.0))
    before = (project_copy / "models/linear.pt").read_bytes()
    result = run(project_copy, *train_command("linear"), env=environment(PYTHONPATH="src"), check=False)
    assert result.returncode == 1
    assert "train.linear: training diverged" in result.stderr and "train.linear.lr = 5.0" in result.stderr
    assert "epoch 1 reached" in result.stderr and "Traceback" not in result.stderr
    assert (project_copy / "models/linear.pt").read_bytes() == before
    [failed] = runs_by_model(MlflowClient(store_uri(project_copy)))["linear"]
    assert failed.info.status == "FAILED"


CHECK_LOCK = PROJECT / ".ci" / "check_lock.py"


def test_ci_lock_check_passes_a_lock_from_the_current_code(reproduced):
    result = run(reproduced[0], str(BIN / "python"), str(CHECK_LOCK), check=False)
    assert result.returncode == 0, result.stderr


def test_ci_lock_check_names_the_code_and_params_the_lock_is_not_from(project_copy):
    with (project_copy / "src/regression/training.py").open("a") as code:
        code.write("# changed\n")
    edit_params(project_copy, lambda params: params["train"]["softmax_nn"].update(lr=0.2))
    result = run(project_copy, str(BIN / "python"), str(CHECK_LOCK), check=False)
    assert result.returncode == 1
    # The lesson package's file, or the package itself, as dvc.yaml lists the stage's code.
    assert re.search(r"^stale dvc\.lock: train@softmax_nn: src/regression(/training\.py)? modified$",
                     result.stderr, re.MULTILINE), result.stderr
    assert "stale dvc.lock: train@softmax_nn: params.yaml train.softmax_nn modified" in result.stderr
    assert "train@linear: params.yaml" not in result.stderr  # linear's params did not change
    assert "run `make run && make sweep` and commit dvc.lock and metrics/" in result.stderr


def test_a_section_no_stage_reads_stops_dvc_repro_and_dvc_exp_run_before_any_stage(project_copy):
    """`trian:` beside `train:`: DVC itself refuses it (the params stage runs first), naming both."""
    edit_params(project_copy, lambda params: params.update(trian={"softmax_nn": {"lr": 0.1}}))
    edit_params(project_copy, lambda params: params["train"]["softmax_nn"].update(lr=0.1))
    for command in (["dvc", "repro"], ["dvc", "exp", "run"]):
        result = run(project_copy, *command, check=False)
        assert result.returncode != 0, result.stdout
        assert stages_run(result.stdout) == {"params"}, result.stdout
        assert "trian = {'softmax_nn': {'lr': 0.1}}: no stage reads it (did you mean 'train'?)" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout


# A new architecture, as README says to add one: a class whose own params are its typed arguments,
# a row of the table, and an entry in params.yaml. Nothing else is edited.
TOY_CLASS = """

class TanhNet(nn.Module):
    \"\"\"A toy: flatten, nn.Linear(784, width), tanh, nn.Linear(width, 10).\"\"\"

    def __init__(self, config: ModelConfig, width: PositiveInt):
        super().__init__()
        self.first = nn.Linear(config.n_features, width)
        self.second = nn.Linear(width, config.n_outputs)

    def forward(self, X):
        return self.second(torch.tanh(self.first(X.reshape(len(X), -1))))

    @torch.no_grad()
    def initialise_(self, init_std, generator):
        for layer in (self.first, self.second):
            _normal_(layer.weight, init_std, generator)
            layer.bias.zero_()


MODELS["tanh_net"] = ModelSpec(IMAGES, TanhNet, partial(F.cross_entropy, reduction="none"),
                               sgd_by_hand=False)
"""


def test_a_new_architecture_is_one_class_and_one_row_and_its_params_entry(project_copy, tmp_path):
    with (project_copy / "src/regression/models.py").open("a") as models:
        models.write(TOY_CLASS)
    toy = {**read_yaml(project_copy / "params.yaml")["train"]["softmax_nn"], "width": 7}
    edit_params(project_copy, lambda params: params["train"].update(tanh_net=toy))

    result = run(project_copy, "dvc", "repro", "train@tanh_net")

    # It, and (as dvc.yaml lists the lesson package: as a whole, or file by file) perhaps the data
    # stages it follows: never another model's.
    ran = stages_run(result.stdout)
    assert "train@tanh_net" in ran and ran <= {"params", "download@fashion-mnist", "prepare@fashion-mnist", "train@tanh_net"}, ran
    assert read_json(project_copy / "metrics/tanh_net.json")["test_accuracy"] > 0.5
    load = ("from regression.models import load_model; m, c = load_model('models/tanh_net.pt'); "
            "print(type(m).__name__, c.architecture, c.params, m.first.out_features)")
    loaded = run(project_copy, str(BIN / "python"), "-c", load, env=environment(PYTHONPATH="src"))
    assert loaded.stdout.split() == ["TanhNet", "tanh_net", "{'width':", "7}", "7"]
    client = MlflowClient(store_uri(project_copy))
    [r] = runs_by_model(client)["tanh_net"]
    assert r.info.status == "FINISHED" and r.data.params["width"] == "7"
    [version] = client.search_model_versions("name = 'fashion-mnist-tanh_net'")
    assert version.run_id == r.info.run_id
    shown = run(project_copy, "dvc", "plots", "show", "--json", "-o", str(tmp_path / "plots")).stdout
    assert "metrics/tanh_net/figures/learning_curves.png" in shown and "metrics/tanh_net/history.json" in shown
