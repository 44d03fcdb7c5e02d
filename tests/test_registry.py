"""tracking.registry: the one ranking rule, as compare, sweep and promote use it."""

import os
import shutil
from types import SimpleNamespace

import pytest
import yaml

from projects import PROJECT
from tracking import access, registry
from tracking.compare import metrics_file
from tracking.naming import SELECTED_BY_TAG
from regression.headline import HEADLINE
from tracking.registry import claimed, deciding_metric, main, rank_key, ranked
from tracking.store import HTTP_BOUNDS


def version(number: int, **tags: float):
    return SimpleNamespace(version=str(number), run_id=f"run{number}",
                           tags={key: f"{value:.6g}" for key, value in tags.items()})


def test_runs_rank_by_the_first_headline_metric_they_have():
    runs = [{"test_loss": 0.1}, {"test_accuracy": 0.9, "test_loss": 0.3},
            {"val_accuracy": 0.8, "test_accuracy": 0.7}, {"val_accuracy": 0.8, "test_accuracy": 0.75},
            {"val_accuracy": 0.85, "test_accuracy": 0.6}, {"test_loss": 0.05}]
    ranked = sorted(runs, key=rank_key)
    assert ranked == [runs[4], runs[3], runs[2], runs[1], runs[5], runs[0]]


def test_the_champion_is_the_best_by_the_first_metric_some_version_has():
    versions = [version(1, test_accuracy=0.95), version(2, val_accuracy=0.8, test_accuracy=0.7),
                version(3, val_accuracy=0.82, test_accuracy=0.6), version(4, val_accuracy=0.82, test_accuracy=0.6)]
    assert [v.version for v in ranked(versions)] == ["3", "4", "2", "1"]  # a tie goes to the earlier version
    [best, _] = ranked([version(1, test_loss=0.2), version(2, test_loss=0.1)])
    assert best.version == "2" and deciding_metric(claimed(best)) == "test_loss"  # smaller is better for a loss
    assert ranked([version(1)]) == []


def test_a_models_metrics_file_is_where_dvc_yaml_writes_it(monkeypatch):
    monkeypatch.chdir(PROJECT)
    [entry] = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]["train"]["do"]["metrics"]
    assert next(iter(entry)) == "metrics/${key}.json"
    assert str(metrics_file("softmax_nn")) == "metrics/softmax_nn.json"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with the project's params.yaml to run `make promote` (`main`) in; the environment
    and MLflow's tracking URI put back after the test."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    shutil.copy(PROJECT / "params.yaml", tmp_path)
    for key in (*HTTP_BOUNDS, "MLFLOW_DISABLE_TELEMETRY", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        monkeypatch.setenv(key, os.environ.get(key, ""))  # so that the values `main` sets are undone
    previous = mlflow.get_tracking_uri()
    yield tmp_path
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def store(project, monkeypatch):
    """An empty sqlite store in `project`, that `main` records in: MlflowClient on it."""
    from mlflow import MlflowClient

    from tracking import registry

    uri = f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # These versions have no model to score again: test_tracking's real stage checks that part.
    monkeypatch.setattr(registry, "unreproduced", lambda version: None)
    return MlflowClient(uri)


def register(client, name: str, *tag_sets: dict) -> list[str]:
    """Versions 1, 2, ... of `name`, each of a run that recorded the metrics its tags claim, named
    `run <n>` unless its tags say otherwise; the runs' ids."""
    client.create_registered_model(name)
    experiment = client.get_experiment_by_name("registered") or client.create_experiment("registered")
    experiment = getattr(experiment, "experiment_id", experiment)
    runs = []
    for number, tags in enumerate(tag_sets, 1):
        run = client.create_run(experiment).info.run_id
        for key in HEADLINE:
            if key in tags:
                client.log_metric(run, key, float(tags[key]))
        client.create_model_version(name, "file:///nowhere", run, tags={"run_name": f"run {number}"} | tags)
        runs.append(run)
    return runs


def test_make_promote_crowns_no_version_whose_claim_its_run_does_not_bear_out(store, capsys):
    """An editor may tag a version (`set-tag`) or register one carrying forged headline metrics: the
    version is passed over, said in one line, and the best version its run bears out is crowned."""
    register(store, "fashion-mnist-softmax_nn", {"val_accuracy": "0.85"}, {"val_accuracy": "0.8"},
             {"val_accuracy": "0.7"})
    store.set_model_version_tag("fashion-mnist-softmax_nn", "2", "val_accuracy", "0.999")  # forged after
    assert main([]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "fashion-mnist-softmax_nn: version 2 not crowned: it claims val_accuracy 0.999, its run recorded 0.8000",
        "fashion-mnist-softmax_nn: champion -> version 1, val_accuracy 0.85", "    from run 'run 1'"]
    register(store, "synthetic-linear", {"test_loss": "0.1"})
    store.set_model_version_tag("synthetic-linear", "1", "test_loss", "0.01")
    assert main(["--model", "synthetic-linear"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "synthetic-linear: no version's claims are borne out by its run and its model; nothing promoted")
    assert store.get_registered_model("synthetic-linear").aliases == {}


def test_make_promote_crowns_the_best_version_of_each_model_or_of_the_one_named(store, capsys):
    assert main([]) == 0
    assert capsys.readouterr().out == "no registered models yet: run the pipeline first (`make run`)\n"

    register(store, "fashion-mnist-softmax_nn", {"val_accuracy": "0.8"}, {"val_accuracy": "0.85"})
    register(store, "synthetic-linear", {"test_loss": "0.2"}, {"test_loss": "0.1"}, {"test_loss": "0.3"})
    assert main([]) == 0
    assert capsys.readouterr().out.splitlines() == [  # in the order of their names
        "fashion-mnist-softmax_nn: champion -> version 2, val_accuracy 0.85", "    from run 'run 2'",
        "synthetic-linear: champion -> version 2, test_loss 0.1, chosen on the test set "
        "(no validation split)", "    from run 'run 2'"]
    champion = store.get_model_version_by_alias("synthetic-linear", "champion")
    assert int(champion.version) == 2 and champion.tags[SELECTED_BY_TAG] == "test_loss"  # what chose it

    register(store, "fashion-mnist-mlp", {"val_accuracy": "0.9", "run_name": "r" * 200})
    register(store, "fashion-mnist-softmax_scratch", {"note": "no metric"})
    store.create_registered_model("synthetic-linear_nn")  # a version without a run name: its run's id
    unnamed = store.create_run(store.get_experiment_by_name("registered").experiment_id).info.run_id
    store.log_metric(unnamed, "test_loss", 0.5)
    store.create_model_version("synthetic-linear_nn", "file:///nowhere", unnamed, tags={"test_loss": "0.5"})
    assert main(["--model", "synthetic-linear_nn"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == f"    from run '{unnamed}'"
    register(store, "synthetic-exact", {"test_loss": "0.5", "run_name": "e" * 105})
    assert main(["--model", "synthetic-exact"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "    from run '" + "e" * 105 + "'"  # 120 columns: whole
    assert main(["--model", "fashion-mnist-softmax_scratch"]) == 0
    assert capsys.readouterr().out == ("fashion-mnist-softmax_scratch: no version has a val_accuracy, "
                                       "test_accuracy, test_loss tag; nothing promoted\n")
    assert main(["--model", "fashion-mnist-mlp"]) == 0
    assert capsys.readouterr().out.splitlines() == [  # that one only, each line within 120 columns
        "fashion-mnist-mlp: champion -> version 1, val_accuracy 0.9", "    from run '" + "r" * 105 + "…"]


def test_make_promote_fails_in_one_line_for_an_account_that_may_not_move_the_alias(store, capsys,
                                                                                 monkeypatch):
    register(store, "fashion-mnist-softmax_nn", {"val_accuracy": "0.8"})
    # What a server with accounts answers a reader asking about the registered model (see
    # tracking.access); it holds nothing on anything else. The store stays the sqlite one: only
    # the permission is asked of "the server".
    def held(uri, resource_type, resource_id):
        assert uri == "http://server"
        if (resource_type, resource_id) == ("registered_model", "fashion-mnist-softmax_nn"):
            return "READ"
        return "NO_PERMISSIONS"

    monkeypatch.setattr(access, "held", held)
    monkeypatch.setattr(registry, "tracking_uri", lambda: "http://server")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")

    assert main([]) == 1
    captured = capsys.readouterr()
    assert captured.err == ("error: MLflow tracking server http://server: account 'reader' holds READ on "
                            "registered model 'fashion-mnist-softmax_nn'; moving its champion alias needs "
                            "MANAGE (ask the server's admin)\n")
    assert captured.out == ""
    assert store.get_registered_model("fashion-mnist-softmax_nn").aliases == {}


def test_ctrl_c_during_make_promote_is_one_line_and_moves_nothing_more(store, capsys, monkeypatch):
    """Scoring each candidate again takes seconds a model: Ctrl-C then is likely, and says what moved."""
    from tracking import registry

    register(store, "fashion-mnist-mlp", {"val_accuracy": "0.9"})
    register(store, "fashion-mnist-softmax_nn", {"val_accuracy": "0.8"})
    promote = registry.promote

    def interrupted_at_the_second(client, name):
        if name == "fashion-mnist-softmax_nn":
            raise KeyboardInterrupt
        return promote(client, name)

    monkeypatch.setattr(registry, "promote", interrupted_at_the_second)
    assert main([]) == 130
    captured = capsys.readouterr()
    assert captured.out.startswith("fashion-mnist-mlp: champion -> version 1")
    assert captured.err == "interrupted: only the champions said above have moved\n"
    assert store.get_registered_model("fashion-mnist-softmax_nn").aliases == {}


def test_make_promote_fails_where_the_store_cannot_be_opened(project, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    assert main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err


def test_make_promote_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    first_line = "The registry: the one ranking rule, and the `champion` alias of each registered model."
    said = " ".join(capsys.readouterr().out.split())  # as argparse wraps it
    assert first_line in said and "--model MODEL one registered model (default: every one)" in said
