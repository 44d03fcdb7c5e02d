"""regression.tracking.registry: the one ranking rule, as compare, sweep and promote use it."""

from types import SimpleNamespace

import yaml

from projects import PROJECT
from regression.tracking.compare import metrics_file
from regression.tracking.registry import choose, rank_key


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
    best, metric = choose(versions)
    assert (best.version, metric) == ("3", "val_accuracy")  # a tie goes to the earlier version
    best, metric = choose([version(1, test_loss=0.2), version(2, test_loss=0.1)])
    assert (best.version, metric) == ("2", "test_loss")  # smaller is better for a loss
    assert choose([version(1)]) is None


def test_a_models_metrics_file_is_where_dvc_yaml_writes_it(monkeypatch):
    monkeypatch.chdir(PROJECT)
    [entry] = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]["train"]["do"]["metrics"]
    assert next(iter(entry)) == "metrics/${key}.json"
    assert str(metrics_file("softmax_nn")) == "metrics/softmax_nn.json"
