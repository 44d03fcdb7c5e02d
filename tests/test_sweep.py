"""`make sweep`: four queued experiments on two workers, each exactly one complete MLflow run.

Run against a new sqlite store (no `mlflow.db` yet: the workers set it up at the same moment)
and against a real MLflow server on PostgreSQL.
"""

import pytest
from mlflow import MlflowClient

from projects import SWEEP_GRID, SWEEP_LEARNING_RATES, environment, run, store_uri, sweep

pytestmark = pytest.mark.slow
def check(output: str, client: MlflowClient, experiment: str) -> None:
    assert "4 experiments on 2 workers" in output and "0 problems" in output, output
    assert "database is locked" not in output
    [found] = [e for e in client.search_experiments() if e.name == experiment]
    runs = client.search_runs([found.experiment_id])
    names = [r.data.tags["dvc.experiment"] for r in runs]
    assert len(runs) == 4 and len(set(names)) == 4, names
    assert {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:  # named after the model, what differs from params.yaml, and the DVC experiment
        assert r.info.run_name == (f"softmax_nn lr={r.data.params['lr']} epochs=2 "
                                   f"prepare.validation_size=100 · {r.data.tags['dvc.experiment']}")
    assert all({"val_accuracy", "test_accuracy"} <= set(r.data.metrics) for r in runs)
    assert {r.data.params["lr"] for r in runs} == set(SWEEP_LEARNING_RATES)
    best = max(runs, key=lambda r: (r.data.metrics["val_accuracy"], -r.info.start_time))
    versions = {v.run_id: v for v in client.search_model_versions("name = 'fashion-mnist-softmax_nn'")}
    champion = client.get_model_version_by_alias("fashion-mnist-softmax_nn", "champion")
    assert versions[champion.run_id].tags["val_accuracy"] == f"{best.data.metrics['val_accuracy']:.6g}"
    assert champion.tags["champion.selected_by"] == "val_accuracy"
    assert "champion -> version" in output and "chosen on the test set" not in output


def test_sweep_on_a_new_sqlite_store(swept):
    path, output = swept
    check(output, MlflowClient(store_uri(path)), "sweep-sqlite")


def test_sweep_on_an_mlflow_server_on_postgresql(project_copy, mlflow_pg_server):
    check(sweep(project_copy, mlflow_pg_server, "sweep-postgres"), MlflowClient(mlflow_pg_server),
          "sweep-postgres")


def test_sweep_refuses_a_workspace_whose_params_differ_from_the_commit(project_copy):
    (project_copy / "params.yaml").write_text((project_copy / "params.yaml").read_text() + "\n")
    env = environment(PYTHONPATH="src", MLFLOW_TRACKING_URI=store_uri(project_copy))
    result = run(project_copy, "python", "-m", "regression.tracking.sweep", *SWEEP_GRID, env=env, check=False)
    assert result.returncode == 1 and "commit them" in result.stderr
    assert "Queued" not in run(project_copy, "dvc", "queue", "status").stdout


def test_a_failed_experiment_is_named_with_the_end_of_its_log(project_copy):
    env = environment(PYTHONPATH="src", MLFLOW_TRACKING_URI=store_uri(project_copy))
    grid = ["--lr", "0.1,-1", "--epochs", "1", "--batch-size", "100", "--validation-size", "100", "--jobs", "2"]
    result = run(project_copy, "python", "-m", "regression.tracking.sweep", *grid, env=env, check=False, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    [problem] = [line for line in result.stderr.splitlines() if "DVC says" in line]
    assert problem.endswith("DVC says Failed (`dvc queue logs " + problem.split()[1].rstrip(":") + "`):")
    log = result.stderr.split(problem, 1)[1]
    assert "train.softmax_nn.lr" in log and "-1" in log, result.stderr  # the params error, from the log
