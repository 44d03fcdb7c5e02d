"""Trains a model of each architecture of the table as the train stage does and prints what came out, for the numerics tests.

Usage: python tests/train_models.py <fashion-mnist folder> <synthetic folder>

Prints one JSON object: what the numbers depended on (`numerics.describe`) and, per model, the
sha256 of its model file's bytes and its per-epoch metrics.
"""

import hashlib
import json
import sys

from regression import numerics
from regression.data import load_dataset
from conftest import own_params_in_project
from regression.models import MODELS, model_bytes
from regression.training import as_splits, new_model, train

# Batches of 100 images: large enough that torch and MKL would split their work across threads.
PARAMS = {"seed": 0, "lr": 0.1, "batch_size": 100, "epochs": 2, "init_std": 0.01}


def main(fashion_folder: str, synthetic_folder: str) -> None:
    results = {}
    for name, spec in MODELS.items():
        folder = fashion_folder if spec.classifies else synthetic_folder
        meta, arrays = load_dataset(folder)
        splits = as_splits(arrays, spec)
        p = spec.params(architecture=name, dataset=meta["name"], **PARAMS | own_params_in_project(name))
        model, config = new_model(name, splits["train"], tuple(meta.get("classes", ())), p)
        history, _ = train(name, spec, model, splits, p)
        results[name] = {"sha256": hashlib.sha256(model_bytes(model, config)).hexdigest(), "history": history}
    print(json.dumps({"numerics": numerics.describe(), "models": results}))


if __name__ == "__main__":
    main(*sys.argv[1:])
