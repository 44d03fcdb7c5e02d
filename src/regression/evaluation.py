"""Scores of a model's outputs: loss and accuracy on a split, and the final test-set report.

The report is made from the test outputs of training's last epoch: test metrics are computed
once. Classifiers report accuracy, per-class accuracy, the confusion matrix and each image's
predicted class; regression reports the test MSE and the learned w and b against the true ones.
"""

import torch
from torch import nn

from regression.headline import ACCURACY, FIT_ERROR, LOSS
from regression.models import ModelSpec


@torch.no_grad()
def score(spec: ModelSpec, outputs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Mean loss and, for a classifier, accuracy."""
    scores = {LOSS: spec.loss(outputs, y).mean().item()}
    if spec.classifies:
        scores[ACCURACY] = (outputs.argmax(dim=1) == y).sum().item() / len(y)
    return scores


@torch.no_grad()
def classification_report(outputs: torch.Tensor, y: torch.Tensor, classes: tuple[str, ...]) -> dict:
    """Test metrics, per-class accuracy, the confusion matrix and the predicted class of each example.

    The confusion matrix has a row per true class and a column per predicted class.
    """
    predicted = outputs.argmax(dim=1)
    n = len(classes)
    confusion = torch.bincount(y * n + predicted, minlength=n * n).reshape(n, n)
    correct, total = confusion.diag().tolist(), confusion.sum(dim=1).tolist()
    return {
        "per_class_accuracy": {name: c / max(t, 1) for name, c, t in zip(classes, correct, total)},
        "confusion": confusion.tolist(),
        "predicted": predicted.tolist(),
    }


@torch.no_grad()
def regression_report(model: nn.Module, truth: dict) -> dict[str, float]:
    """The learned w (`w_0`, `w_1`, ...) and b of a linear model; `w_err` is the largest
    |w_i - true w_i|, `b_err` is |b - true b|."""
    w, b = model.linear.weight.reshape(-1).tolist(), model.linear.bias.item()
    return {f"w_{i}": value for i, value in enumerate(w)} | {
        "b": b,
        f"w{FIT_ERROR}": max(abs(value - true) for value, true in zip(w, truth["true_w"])),
        f"b{FIT_ERROR}": abs(b - truth["true_b"]),
    }
