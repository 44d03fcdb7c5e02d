"""A dataset is a row: a second IDX image dataset, added to a project copy by its row of `datasets` and a
train entry alone, is downloaded from 127.0.0.1, prepared, trained on and recorded by `dvc repro`.
End to end, so in `make test-all`."""

import json

import pytest
from mlflow import MlflowClient

from idx_files import write_tiny_fashion_mnist_files
from projects import edit_params, make_project, read_json, run, runs_by_model, served, stages_run, store_uri

CLASSES = ["circle", "square", "triangle"]
pytestmark = pytest.mark.slow

NAMES = {"train": ["shapes-train-images.idx", "shapes-train-labels.idx"],
         "test": ["shapes-test-images.idx", "shapes-test-labels.idx"]}


def test_a_second_image_dataset_is_a_row_and_a_train_entry(tmp_path, data_server):
    mirror = tmp_path / "shapes-mirror"  # 3 classes of 12 x 12 images, under names of its own
    files = write_tiny_fashion_mnist_files(mirror, n_train=90, n_test=30, classes=3, side=12, names=NAMES)
    project = make_project(tmp_path / "project", *data_server)
    with served(mirror) as url:
        def add_shapes(params):
            params["datasets"]["shapes"] = {
                "classes": CLASSES, "source_env": "SHAPES_SOURCE", "sources": [url], "timeout_seconds": 30,
                "files": files, "splits": NAMES, "validation_size": 0, "seed": 0}
            params["train"]["shapes_nn"] = {**params["train"]["softmax_nn"], "architecture": "softmax_nn",
                                            "dataset": "shapes", "batch_size": 10}
        edit_params(project, add_shapes)
        repro = run(project, "dvc", "repro", "train@shapes_nn", "samples@shapes")

    assert stages_run(repro.stdout) == {"params", "download@shapes", "prepare@shapes", "train@shapes_nn",
                                        "samples@shapes"}, repro.stdout
    assert sorted(p.name for p in (project / "data/raw/shapes").iterdir()) == sorted(files)
    meta = json.loads((project / "data/shapes/meta.json").read_text())
    assert (meta["name"], meta["classes"], meta["rows"]) == ("shapes", CLASSES, {"train": 90, "test": 30})
    assert read_json(project / "metrics/shapes_nn.json")["test_accuracy"] > 0.9  # bands by class: easy
    assert (project / "metrics/shapes-samples.png").stat().st_size > 0
    client = MlflowClient(store_uri(project))
    [recorded] = runs_by_model(client, "shapes")["shapes_nn"]
    assert recorded.info.status == "FINISHED" and recorded.data.params["dataset"] == "shapes"
    [version] = client.search_model_versions("name = 'shapes-shapes_nn'")
    assert version.run_id == recorded.info.run_id
    assert not (project / "data/fashion-mnist").exists()  # the other dataset's stages did not run
