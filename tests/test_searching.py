"""Questions to the store answered over all of it: the answers past a page boundary, with a page
of two, through the functions every command calls (`tracking.searching`).

A real sqlite store, made through MlflowClient. The best run and the best version are the
oldest: the last page of the store's default order (newest first).
"""

import pytest
from mlflow import MlflowClient

from tracking.compare import compare
from tracking.naming import MODEL_DIGEST_TAG, file_digest, run_of_outputs, runs_of
from tracking.registry import ALIAS, promote
from tracking.searching import count, count_tagged, every

PAGE = 2
# val_accuracy of each run, oldest first: the oldest is the best, the rest worse and worse
SCORES = [0.95, 0.80, 0.85, 0.70, 0.90, 0.75, 0.60]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """{client, experiment, names (best first)}: a run of softmax_nn per score, each with a
    registered version tagged as the train stage tags it; and one linear run."""
    folder = tmp_path_factory.mktemp("store")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.create_experiment("paged", artifact_location=(folder / "artifacts").as_uri())
    client.create_registered_model("fashion-mnist-softmax_nn")
    names = {}
    for i, score in enumerate(SCORES):
        run = client.create_run(experiment, run_name=f"run {i}", start_time=1_000_000 + i * 1000,
                                tags={"model": "softmax_nn", "dvc.stage": "train@softmax_nn",
                                      "dvc.experiment": f"exp-{i}"})
        client.log_metric(run.info.run_id, "val_accuracy", score)
        client.log_metric(run.info.run_id, "test_accuracy", 0.5)
        client.set_terminated(run.info.run_id)
        client.create_model_version("fashion-mnist-softmax_nn", str(folder), run.info.run_id,
                                    tags={"val_accuracy": f"{score:.6g}", "test_accuracy": "0.5",
                                          "run_name": f"run {i}"})
        names[score] = f"exp-{i}"
    linear = client.create_run(experiment, tags={"model": "linear"}).info.run_id
    client.log_metric(linear, "test_loss", 0.1)
    client.set_terminated(linear)
    # Not to be counted or shown: a deleted run (the best, had it stayed), a run in another experiment
    deleted = client.create_run(experiment, tags={"model": "softmax_nn"}).info.run_id
    client.log_metric(deleted, "val_accuracy", 0.99)
    gone = client.create_model_version("fashion-mnist-softmax_nn", str(folder), deleted, tags={"val_accuracy": "0.99"})
    client.delete_model_version("fashion-mnist-softmax_nn", gone.version)
    client.delete_run(deleted)
    client.create_run(client.create_experiment("other"), tags={"model": "softmax_nn"})
    return {"client": client, "experiment": experiment, "names": [names[s] for s in sorted(names, reverse=True)]}


def test_every_result_past_the_first_page(store):
    client, experiment = store["client"], store["experiment"]
    assert len(client.search_runs([experiment], max_results=PAGE)) == PAGE  # the trap: one page
    runs = runs_of(client, [experiment], "softmax_nn", page_size=PAGE)
    assert sorted(r.data.metrics["val_accuracy"] for r in runs) == sorted(SCORES)
    versions = list(every(client.search_model_versions, PAGE, filter_string="name = 'fashion-mnist-softmax_nn'"))
    assert sorted(int(v.version) for v in versions) == list(range(1, len(SCORES) + 1))


@pytest.mark.parametrize("limit", [1, PAGE, PAGE + 1, len(SCORES), 50])
def test_the_store_ranks_and_only_the_best_are_fetched(store, limit):
    client, experiment = store["client"], store["experiment"]
    best = runs_of(client, [experiment], "softmax_nn", order_by=["metrics.val_accuracy DESC"], limit=limit,
                   page_size=PAGE)
    assert [r.data.metrics["val_accuracy"] for r in best] == sorted(SCORES, reverse=True)[:limit]


@pytest.mark.parametrize("filter_string", ["", "tags.model = 'softmax_nn'", "tags.model = 'linear'",
                                           "tags.model = 'none'", "metrics.val_accuracy > 0.72",
                                           "metrics.val_accuracy >= 0.8"])
def test_a_count_is_the_number_of_results(store, filter_string):
    client, experiment = store["client"], store["experiment"]
    every_run = list(every(client.search_runs, PAGE, experiment_ids=[experiment], filter_string=filter_string))
    assert count(client.search_runs, experiment_ids=[experiment], filter_string=filter_string) == len(every_run)


@pytest.mark.parametrize("model", ["softmax_nn", "linear", "none"])
def test_a_database_stores_count_of_a_models_runs_is_what_a_search_lists(store, model):
    """The SQL count `make compare` asks an sqlite or PostgreSQL store: the runs a search lists."""
    client, experiment = store["client"], store["experiment"]
    listed = list(every(client.search_runs, PAGE, experiment_ids=[experiment], filter_string=f"tags.model = '{model}'"))
    assert count_tagged(client, [experiment, experiment], "model", model) == len(listed)


class AsIfServed:
    """The store's own client, taken for a server's: the commands read it as they read a server."""

    tracking_uri = "http://127.0.0.1:5001"

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.parametrize("where", ["database", "server"])
def test_make_compare_shows_the_true_best_and_counts_every_run(store, where):
    client, experiment = store["client"], store["experiment"]
    client = client if where == "database" else AsIfServed(client)
    lines = compare(client, [experiment], ["softmax_nn", "linear", "softmax_scratch"], limit=3, page_size=PAGE)
    heading = lines.index(f"softmax_nn: {len(SCORES)} runs, the best 3 shown")
    rows = lines[heading + 2:heading + 5]
    assert [row.split()[3] for row in rows] == store["names"][:3], "\n".join(lines)
    assert "linear: 1 run" in lines and not any(line.startswith("softmax_scratch") for line in lines)
    assert all(len(line) <= 120 for line in lines)


@pytest.mark.parametrize("where", ["database", "server"])
def test_make_promote_crowns_the_best_version_on_the_last_page(store, where, monkeypatch):
    from tracking import registry

    monkeypatch.setattr(registry, "unreproduced", lambda version: None)  # no model: ranking alone
    client = store["client"] if where == "database" else AsIfServed(store["client"])
    line = promote(client, "fashion-mnist-softmax_nn", page_size=PAGE)
    assert str(client.get_model_version_by_alias("fashion-mnist-softmax_nn", ALIAS).version) == "1", line
    assert line.startswith("fashion-mnist-softmax_nn: champion -> version 1, val_accuracy 0.95")


def test_the_run_of_some_outputs_is_the_run_that_wrote_them_not_the_newest(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("outputs")
    model_file = tmp_path / "softmax_nn.pt"
    made = {}
    for i, content in enumerate([b"older model", b"newer model", b"older model"]):
        model_file.write_bytes(content)
        run = client.create_run(experiment, run_name=f"run {i}", start_time=1_000_000 + i,
                                tags={"model": "softmax_nn", "dvc.stage": "train@softmax_nn",
                                      MODEL_DIGEST_TAG: file_digest(model_file)})
        client.set_terminated(run.info.run_id, "FINISHED" if i < 2 else "KILLED")
        made[content] = made.get(content, run.info.run_name)
    model_file.write_bytes(b"older model")  # the workspace holds the older run's model again
    found = run_of_outputs(client, [experiment], "softmax_nn", "train@softmax_nn", model_file)
    assert found.info.run_name == "run 0"  # not run 1 (newest finished), nor run 2 (killed)
    model_file.write_bytes(b"a model no run made")
    assert run_of_outputs(client, [experiment], "softmax_nn", "train@softmax_nn", model_file) is None


def test_an_sqlite_stores_statistics_are_measured_again_once_its_runs_have_doubled(tmp_path):
    """Without sqlite's statistics a search ranked by a metric scans every run's metric per run
    (seconds at 10,000 runs); `keep_planner_statistics` measures them again only when the runs
    have doubled since (the timings are in benchmarks/store.py)."""
    import sqlite3

    from tracking.store import keep_planner_statistics

    database = tmp_path / "mlflow.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY)")

    def add_runs(n: int) -> None:
        with sqlite3.connect(database) as connection:
            start = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
            connection.executemany("INSERT INTO runs VALUES (?)", [(f"run-{start + i}",) for i in range(n)])

    def measured() -> int | None:
        with sqlite3.connect(database) as connection:
            try:
                row = connection.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'runs'").fetchone()
            except sqlite3.OperationalError:
                return None
        return int(row[0].split()[0]) if row else None

    keep_planner_statistics(database)
    assert measured() is None  # no run yet: nothing to measure
    for added, expected in ((3, 3), (2, 3), (1, 6), (5, 6), (1, 12)):
        add_runs(added)
        keep_planner_statistics(database)
        assert measured() == expected, (added, expected)


def test_summary_estimates_a_sweep_not_run_from_its_models_train_run(tmp_path, monkeypatch):
    """`make run` leaves the sweeps to `make sweep`; its summary says roughly how long one would take:
    the trials' epochs over the rows they train on (side by side, one per core) and the refit's, at the
    pace of the model's train run."""
    from types import SimpleNamespace

    import numpy as np

    from regression.data import save_dataset
    from tracking.compare import sweep_estimate

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    rows = np.zeros((100, 1), dtype=np.uint8), np.zeros(100, dtype=np.int64)
    save_dataset("data/tiny", {"train": rows}, {"name": "tiny"})
    params = {"train": {"mlp": {"dataset": "tiny", "epochs": 10, "lr": 0.1}},
              "sweep": {"mlp": {"dataset": "tiny", "validation_size": 20, "seed": 0, "sample": 0,
                                "grid": {"lr": [0.2, 0.4], "epochs": [60], "batch_size": [128],
                                         "weight_decay": [0.0001], "schedule": ["cosine"]}}}}
    ten_epochs_in_a_minute = SimpleNamespace(info=SimpleNamespace(start_time=0, end_time=60_000))
    # 6 s an epoch of 100 rows; trials 2 x 60 x 80 rows on 2 cores, refit 60 x 100: 648 s
    assert sweep_estimate(params, "mlp", ten_epochs_in_a_minute) == " (about 11 min here, at train@mlp's pace)"
    assert sweep_estimate(params, "mlp", None) == ""
