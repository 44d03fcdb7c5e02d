"""Shared fixtures: tiny Fashion-MNIST-like data, the synthetic linear data, and models ready to train.

torch is imported inside the fixtures, so test files that need none of them (download, dvc.yaml)
do not pay for it.
"""

import types
from dataclasses import dataclass

import pytest

import regression  # noqa: F401 - pins torch's numerics before any test imports torch

# The end-to-end fixtures: project copies, their data server and MLflow servers; PostgreSQL;
# Chromium for the browser tests.
pytest_plugins = ["projects", "postgres", "browser"]

TRUE_W, TRUE_B, NOISE_STD = [2.0, -3.4], 4.2, 0.01

# Per kind of data an architecture takes, the params a test trains with unless it says otherwise:
# the lesson's for the linear model; for the softmax models a few quick epochs on the tiny images.
TRAIN_PARAMS = {
    "features": {"dataset": "synthetic", "seed": 0, "lr": 0.05, "batch_size": 100, "epochs": 10,
                   "init_std": 0.01},
    "images": {"dataset": "fashion-mnist", "seed": 0, "lr": 0.1, "batch_size": 32, "epochs": 3,
                       "init_std": 0.01},
}


@pytest.fixture(scope="session")
def tiny_fashion() -> dict:
    """A learnable 10-class task stored as `prepare` stores Fashion-MNIST:
    {"train": 200, "test": 50 examples}, each (uint8 images (n, 28, 28), int64 labels (n,))."""
    import torch

    from idx_files import learnable_split

    generator = torch.Generator().manual_seed(0)
    arrays = {}
    for split, n in (("train", 200), ("test", 50)):
        images, labels = learnable_split(n, generator)
        arrays[split] = (images.numpy(), labels.numpy())
    return arrays


@pytest.fixture(scope="session")
def linear_data() -> types.SimpleNamespace:
    """The lesson's y = Xw + b + noise (w = [2, -3.4], b = 4.2, noise std 0.01), drawn by the
    `generate` stage's own code: .arrays {"train": 1000 rows, "test": 200 rows} of (float32 X (n, 2),
    float32 y (n, 1)) and .meta with the true w and b."""
    import numpy as np

    synthetic_data = stage_module("generate").synthetic_data
    rng, w = np.random.default_rng(0), np.asarray(TRUE_W, dtype=np.float32)
    return types.SimpleNamespace(
        arrays={"train": synthetic_data(w, TRUE_B, NOISE_STD, 1000, rng),
                "test": synthetic_data(w, TRUE_B, NOISE_STD, 200, rng)},
        meta={"name": "synthetic", "true_w": TRUE_W, "true_b": TRUE_B})


def stage_module(name: str) -> types.ModuleType:
    """stages/<name>.py as a module (its `main` not run), to test its functions."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "stages" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"stage_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def own_params_in_project(architecture: str) -> dict:
    """An architecture's own params (the MLP's `hidden`) as the first entry of it in params.yaml has them."""
    from pathlib import Path

    from regression.params import read_yaml
    from regression.params_schema import TrainParams

    train = read_yaml(Path(__file__).resolve().parents[1] / "params.yaml")["train"]
    entry = next(e for name, e in train.items() if e.get("architecture", name) == architecture)
    return {key: value for key, value in entry.items() if key not in TrainParams.model_fields}


@dataclass
class Trainable:
    """A model of the table, initialised as the train stage does, with its data and params."""
    name: str
    spec: object
    config: object
    model: object
    splits: dict
    params: object
    meta: dict

    def train(self, **kwargs):
        from regression.training import train

        return train(self.name, self.spec, self.model, self.splits, self.params, **kwargs)


@pytest.fixture(scope="session")
def trainable(tiny_fashion, linear_data):
    """make(name, validation=0, **params) -> a fresh Trainable; `validation` rows of the training
    data are held out (seed 0) as a validation split; params override TRAIN_PARAMS."""
    from regression.data import hold_out
    from idx_files import CLASSES
    from regression.models import MODELS
    from regression.training import as_splits, new_model

    def make(name: str, validation: int = 0, **params) -> Trainable:
        spec = MODELS[name]  # an architecture of the table, trained as the model of the same name
        if not spec.classifies:
            arrays, meta, classes = linear_data.arrays, linear_data.meta, ()
        else:
            arrays, classes = tiny_fashion, CLASSES
            meta = {"name": "fashion-mnist", "classes": list(CLASSES)}
        if validation:
            train_part, validation_part = hold_out(*arrays["train"], validation, seed=0)
            arrays = {"train": train_part, "val": validation_part, "test": arrays["test"]}
        splits = as_splits(arrays, spec)
        p = spec.params(architecture=name, **(TRAIN_PARAMS[spec.takes] | own_params_in_project(name) | params))
        model, config = new_model(name, splits["train"], classes, p)
        return Trainable(name, spec, config, model, splits, p, meta)

    return make


def pytest_collection_modifyitems(items):
    """For mutmut 3.8 (`make mutants`). It reads a test's id as `item._nodeid`, which pytest 9 keeps
    elsewhere. Its first pass, which records the functions each test calls, runs with
    MUTANT_UNDER_TEST=stats, which the processes tests start (stages, in other folders) must not
    inherit: mutmut keeps its own copy in this process. A mutant's name, later, they do inherit."""
    import os
    import sys

    if "mutmut" in sys.modules:
        for item in items:
            if not hasattr(item, "_nodeid"):
                item._nodeid = item.nodeid
        if os.environ.get("MUTANT_UNDER_TEST") == "stats":
            del os.environ["MUTANT_UNDER_TEST"]
