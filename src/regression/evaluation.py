"""Test-set metrics: accuracy, per-class accuracy and confusion matrix, or MSE and recovered w, b."""

import torch
from torch import nn
from torch.nn import functional as F

from regression.data import FASHION_MNIST_CLASSES, Split
from regression.models import cross_entropy


@torch.no_grad()
def evaluate_classifier(model: nn.Module, test: Split) -> tuple[dict, list[list[int]], list[tuple]]:
    """Metrics, the confusion matrix (rows: true class, columns: predicted) and (actual, predicted) pairs."""
    logits = model(test.X)
    predicted = logits.argmax(dim=1)
    n_classes = len(FASHION_MNIST_CLASSES)
    confusion = torch.bincount(test.y * n_classes + predicted, minlength=n_classes ** 2)
    confusion = confusion.reshape(n_classes, n_classes)
    correct, total = confusion.diag().tolist(), confusion.sum(dim=1).tolist()
    metrics = {
        "test_accuracy": sum(correct) / len(test.y),
        "test_loss": cross_entropy(logits, test.y).mean().item(),
        "per_class_accuracy": {name: c / max(t, 1) for name, c, t in zip(FASHION_MNIST_CLASSES, correct, total)},
    }
    pairs = [(FASHION_MNIST_CLASSES[a], FASHION_MNIST_CLASSES[p])
             for a, p in zip(test.y.tolist(), predicted.tolist())]
    return metrics, confusion.tolist(), pairs


@torch.no_grad()
def evaluate_linear(model: nn.Linear, test: Split, truth: dict) -> tuple[dict, list[tuple]]:
    """Test MSE and how far the learned w and b are from the ones the data was made with."""
    predicted = model(test.X)
    w, b = model.weight.reshape(-1).tolist(), model.bias.item()
    metrics = {
        "test_mse": F.mse_loss(predicted, test.y).item(),
        "w": w,
        "b": b,
        "true_w": truth["w"],
        "true_b": truth["b"],
        "w_abs_error": max(abs(got - true) for got, true in zip(w, truth["w"])),
        "b_abs_error": abs(b - truth["b"]),
    }
    pairs = [(round(a, 6), round(p, 6)) for a, p in zip(test.y.reshape(-1).tolist(), predicted.reshape(-1).tolist())]
    return metrics, pairs
