"""`make sweep`: four queued experiments on two workers, each exactly one complete MLflow run.

Run against a new sqlite store (no `mlflow.db` yet: the workers set it up at the same moment)
and against a real MLflow server on PostgreSQL.
"""

import pytest
from mlflow import MlflowClient

from projects import environment, run, store_uri

pytestmark = pytest.mark.slow
GRID = ["--lr", "0.05,0.1", "--epochs", "2,3", "--batch-size", "50", "--validation-size", "100",
        "--jobs", "2"]


def sweep(project, uri: str, experiment: str) -> tuple[str, MlflowClient]:
    env = environment(PYTHONPATH="src", MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=experiment)
    result = run(project, "python", "-m", "regression.sweep", *GRID, env=env, timeout=900)
    output = result.stdout + result.stderr
    assert "database is locked" not in output
    return output, MlflowClient(uri)


def check(output: str, client: MlflowClient, experiment: str) -> None:
    assert "4 experiments on 2 workers" in output and "0 problems" in output, output
    [found] = [e for e in client.search_experiments() if e.name == experiment]
    runs = client.search_runs([found.experiment_id])
    names = [r.data.tags["dvc.experiment"] for r in runs]
    assert len(runs) == 4 and len(set(names)) == 4, names
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all({"val_accuracy", "test_accuracy"} <= set(r.data.metrics) for r in runs)
    assert {r.data.params["lr"] for r in runs} == {"0.05", "0.1"}
    best = max(runs, key=lambda r: (r.data.metrics["val_accuracy"], -r.info.start_time))
    versions = {v.run_id: v for v in client.search_model_versions("name = 'fashion-mnist-softmax_nn'")}
    champion = client.get_model_version_by_alias("fashion-mnist-softmax_nn", "champion")
    assert versions[champion.run_id].tags["val_accuracy"] == f"{best.data.metrics['val_accuracy']:.6g}"
    assert champion.tags["champion.selected_by"] == "val_accuracy"
    assert "champion -> version" in output and "chosen on the test set" not in output


def test_sweep_on_a_new_sqlite_store(project_copy):
    assert not (project_copy / "mlflow.db").exists()
    output, client = sweep(project_copy, store_uri(project_copy), "sweep-sqlite")
    check(output, client, "sweep-sqlite")


def test_sweep_on_an_mlflow_server_on_postgresql(project_copy, mlflow_pg_server):
    output, client = sweep(project_copy, mlflow_pg_server, "sweep-postgres")
    check(output, client, "sweep-postgres")


def test_sweep_refuses_a_workspace_whose_params_differ_from_the_commit(project_copy):
    (project_copy / "params.yaml").write_text((project_copy / "params.yaml").read_text() + "\n")
    env = environment(PYTHONPATH="src", MLFLOW_TRACKING_URI=store_uri(project_copy))
    result = run(project_copy, "python", "-m", "regression.sweep", *GRID, env=env, check=False)
    assert result.returncode == 1 and "commit them" in result.stderr
    assert "Queued" not in run(project_copy, "dvc", "queue", "status").stdout
