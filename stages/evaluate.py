"""Stage `evaluate@<model>`: test metrics into metrics/<model>/, added to the model's MLflow run.

Usage: python stages/evaluate.py <model>   (a key of `train` in params.yaml)
"""

import csv
import io
from pathlib import Path

import mlflow
import torch

from regression import stage, tracking
from regression.data import FASHION_MNIST_CLASSES, load_dataset, load_linear
from regression.evaluation import evaluate_classifier, evaluate_linear
from regression.figures import confusion_figure
from regression.files import sha256_file, write_bytes_atomic, write_json
from regression.models import build_model, is_classifier


def csv_bytes(header: tuple, rows: list[tuple]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


def main(params, argv):
    name = stage.model_argument(params, argv)
    p = params.train[name]
    data_dir = Path("data") / p.dataset
    model_path = Path(f"models/{name}.pt")
    _, test_set = load_dataset(p.dataset, data_dir)
    model = build_model(name, p.init_std, p.seed, n_features=test_set.X.shape[1])
    model.load_state_dict(torch.load(model_path, weights_only=True))

    if is_classifier(name):
        metrics, confusion, pairs = evaluate_classifier(model, test_set)
        figure = confusion_figure(confusion, f"{name}: test set")
    else:
        _, _, truth = load_linear(data_dir)
        metrics, pairs = evaluate_linear(model, test_set, truth)
    predictions = csv_bytes(("actual", "predicted"), pairs)

    experiment_id = tracking.configure()
    run_id = tracking.find_train_run(experiment_id, f"train@{name}", sha256_file(model_path))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(tracking.flat(metrics), step=p.epochs)
        mlflow.log_dict(metrics, "evaluation/metrics.json")
        mlflow.log_text(predictions.decode(), "evaluation/predictions.csv")
        if is_classifier(name):
            mlflow.log_dict({"classes": FASHION_MNIST_CLASSES, "rows_actual_columns_predicted": confusion},
                            "evaluation/confusion_matrix.json")
            mlflow.log_figure(figure, "evaluation/confusion_matrix.png")
    write_json(f"metrics/{name}/eval.json", metrics)
    write_bytes_atomic(f"metrics/{name}/predictions.csv", predictions)
    print(f"metrics/{name}/eval.json written; added to MLflow run {run_id}")


if __name__ == "__main__":
    stage.run(main)
