"""Stage `train@<model>`: train one model, save its state_dict, record the run in MLflow.

Usage: python stages/train.py <model>   (a key of `train` in params.yaml)
"""

from pathlib import Path

import mlflow
import torch

from regression import stage, tracking
from regression.data import folder_digest, load_dataset
from regression.files import sha256_bytes, write_json, tensors_bytes, write_bytes_atomic
from regression.models import build_model
from regression.training import train


def main(params, argv):
    name = stage.model_argument(params, argv)
    p = params.train[name]
    data_dir = Path("data") / p.dataset
    train_set, test_set = load_dataset(p.dataset, data_dir)
    digest = folder_digest(data_dir)
    torch.use_deterministic_algorithms(True)
    model = build_model(name, p.init_std, p.seed, n_features=train_set.X.shape[1])

    logged_params = p.model_dump() | {"model": name}
    if p.dataset == "synthetic":
        logged_params |= tracking.flat(params.generate.model_dump(), "generate.")

    def on_epoch(record):
        print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
        tracking.log_history(record)

    experiment_id = tracking.configure()
    with mlflow.start_run(experiment_id=experiment_id, run_name=name,
                          tags=tracking.run_tags(name, digest)) as run:
        mlflow.log_params(logged_params)
        tracking.log_dataset(data_dir, p.dataset, digest)
        history = train(name, model, train_set, test_set, p, on_epoch)
        state = tensors_bytes(model.state_dict())
        mlflow.set_tag(tracking.MODEL_HASH_TAG, sha256_bytes(state))
        tracking.log_model(model, train_set.X[:5])
        write_json(f"metrics/{name}/history.json", history)
        write_json(f"metrics/{name}/train.json", history[-1])
        write_bytes_atomic(f"models/{name}.pt", state)
    print(f"models/{name}.pt written; MLflow run {run.info.run_id}")


if __name__ == "__main__":
    stage.run(main)
