"""The lesson end to end, in `make test`'s quick loop: `dvc repro` then `dvc exp run` of two models in a
temporary git repo, on tiny IDX files served from 127.0.0.1, recorded in a real MLflow store.

The whole pipeline (every model, the sweeps, the queue, servers) is tests/test_pipeline.py's, in
`make test-all`.
"""

import hashlib

from mlflow import MlflowClient

from projects import make_project, read_json, run, runs_by_model, stages_run, store_uri

LESSON = ["train@linear", "train@softmax_nn"]


def test_dvc_repro_then_dvc_exp_run_train_record_and_register(tmp_path, data_server):
    url, files = data_server
    project = make_project(tmp_path / "project", url, files)

    repro = run(project, "dvc", "repro", *LESSON)
    assert stages_run(repro.stdout) == {"params", "download@fashion-mnist", "prepare@fashion-mnist", "generate", *LESSON}, repro.stdout
    assert read_json(project / "metrics/softmax_nn.json")["test_accuracy"] > 0.9  # tiny images: easy
    client = MlflowClient(store_uri(project))
    [run_nn] = runs_by_model(client)["softmax_nn"]
    assert run_nn.info.status == "FINISHED" and run_nn.data.params["lr"] == "0.05"
    model_file = (project / "models/softmax_nn.pt").read_bytes()
    assert run_nn.data.tags["model.sha256"] == hashlib.sha256(model_file).hexdigest()
    [version] = client.search_model_versions("name = 'fashion-mnist-softmax_nn'")
    assert version.run_id == run_nn.info.run_id

    exp = run(project, "dvc", "exp", "run", "-n", "nn-lr-0.1", "-S", "train.softmax_nn.lr=0.1", *LESSON)
    assert stages_run(exp.stdout) == {"params", "train@softmax_nn"}, exp.stdout
    first, latest = runs_by_model(client)["softmax_nn"]
    assert latest.info.status == "FINISHED" and latest.data.params["lr"] == "0.1"
    assert latest.info.run_name == "softmax_nn lr=0.1 · nn-lr-0.1"
    assert latest.info.start_time > first.info.end_time
    assert len(client.search_model_versions("name = 'fashion-mnist-softmax_nn'")) == 2
