"""A trained model's results as files: headline metrics, predictions and figures of the test set.

Made from the last epoch's record and test outputs (see training.train), so no test metric is
computed twice. The headline metrics go to DVC (`dvc metrics show`) and the registry; the
files go to the model's evaluation folder (for `dvc plots`) and to its MLflow run.
"""

import csv
import io
from dataclasses import dataclass

import torch
from torch import nn

from regression import figures
from regression.evaluation import classification_report, regression_report
from regression.files import json_bytes
from regression.headline import FIT_ERROR, HEADLINE
from regression.models import ModelConfig, ModelSpec

GRID_IMAGES = 24  # test images shown with their predicted class


@dataclass
class Report:
    metrics: dict[str, float]  # the headline numbers
    files: dict[str, bytes]    # file name -> content
    classification: dict | None = None  # a classifier's evaluation.classification_report


def csv_bytes(header: tuple, rows) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


def make_report(spec: ModelSpec, model: nn.Module, last: dict, test_outputs: torch.Tensor,
                test_y: torch.Tensor, config: ModelConfig, meta: dict) -> Report:
    """Headline metrics (a regression model's fit after them) and data files; `last` is the last
    epoch's record."""
    metrics = {key: last[key] for key in HEADLINE if key in last}
    if not spec.classifies:
        pairs = zip(test_y.reshape(-1).tolist(), test_outputs.reshape(-1).tolist())
        # The learned w and b are headline numbers; their errors, beside the true values, are in
        # fit.json (so that `dvc metrics show` fits 120 columns).
        fit = regression_report(model, meta)
        learned = {key: value for key, value in fit.items() if not key.endswith(FIT_ERROR)}
        return Report(metrics=metrics | learned, files={
            "fit.json": json_bytes(fit | {"true_w": meta["true_w"], "true_b": meta["true_b"]}),
            "predictions.csv": csv_bytes(("actual", "predicted"),
                                         ((f"{a:.6g}", f"{p:.6g}") for a, p in pairs))})

    classes = config.classes
    result = classification_report(test_outputs, test_y, classes)
    pairs = zip(test_y.tolist(), result["predicted"])
    return Report(metrics=metrics, files={
        "predictions.csv": csv_bytes(("actual", "predicted"), ((classes[a], classes[p]) for a, p in pairs)),
        "per_class_accuracy.json": json_bytes([{"class": c, "accuracy": a}
                                               for c, a in result["per_class_accuracy"].items()]),
        "confusion_matrix.json": json_bytes({"classes": list(classes),
                                             "rows_true_columns_predicted": result["confusion"]}),
    }, classification=result)


def draw_figures(name: str, spec: ModelSpec, report: Report, history: list[dict], test_outputs: torch.Tensor,
                 test_X, test_y: torch.Tensor, classes) -> dict[str, bytes]:
    """The report's pictures as PNG files; `test_X` are the test inputs as stored (images)."""
    curves = {"learning_curves.png": figures.png_bytes(
        figures.learning_curves(history, name, spec.loss_name, spec.classifies))}
    if not spec.classifies:
        return curves | {"fit.png": figures.png_bytes(figures.fit_figure(
            test_y.reshape(-1).numpy(), test_outputs.reshape(-1).numpy(),
            f"{name}: test set, predicted against true"))}
    shown = slice(GRID_IMAGES)
    return curves | {
        "confusion_matrix.png": figures.png_bytes(figures.confusion_figure(
            report.classification["confusion"], classes, f"{name}: test set confusion matrix")),
        "per_class_accuracy.png": figures.png_bytes(figures.per_class_figure(
            report.classification["per_class_accuracy"], f"{name}: test accuracy per class")),
        "test_predictions.png": figures.png_bytes(figures.prediction_grid(
            test_X[shown].numpy(), test_y[shown].tolist(), report.classification["predicted"][shown],
            classes, f"{name}: the first {GRID_IMAGES} test images")),
    }
