"""Mini-batch SGD over in-memory tensors, one epoch at a time, as the lesson trains."""

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn, optim
from torch.nn import functional as F

from regression import PipelineError
from regression.data import Split
from regression.models import cross_entropy, is_classifier
from regression.params import TrainParams


class TrainingDiverged(PipelineError):
    """The loss became NaN or infinite."""


def diverged(name: str, params: TrainParams, what: str) -> TrainingDiverged:
    return TrainingDiverged(f"train.{name}: {what} (train.{name}.lr = {params.lr}); "
                            "try a smaller learning rate")


def minibatches(n: int, batch_size: int, generator: torch.Generator):
    """Index tensors of one shuffled pass over n examples (the last batch may be short)."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def sgd_(parameters, lr: float, batch_size: int) -> None:
    """The hand-written SGD step: gradients are of the summed loss, so divide by the batch."""
    with torch.no_grad():
        for parameter in parameters:
            parameter -= lr * parameter.grad / batch_size
            parameter.grad.zero_()


def scratch_step(model: nn.Module, lr: float, X, y):
    output = model(X)
    loss = cross_entropy(output, y).sum()
    loss.backward()
    sgd_(model.parameters(), lr, len(y))
    return output.detach(), loss.item() / len(y)


def optimizer_step(model: nn.Module, optimizer: optim.Optimizer, loss_fn, X, y):
    output = model(X)
    loss = loss_fn(output, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return output.detach(), loss.item()


def make_step(name: str, model: nn.Module, lr: float) -> Callable:
    """One SGD update on a batch; returns the batch's outputs and its mean loss."""
    if name == "softmax_scratch":
        return partial(scratch_step, model, lr)
    loss_fn = F.cross_entropy if is_classifier(name) else F.mse_loss
    # foreach=False: for two small tensors a plain loop is cheaper than the batched kernels.
    optimizer = optim.SGD(model.parameters(), lr=lr, foreach=False)
    return partial(optimizer_step, model, optimizer, loss_fn)


@torch.no_grad()
def evaluate_split(name: str, model: nn.Module, split: Split) -> dict:
    """Mean loss on a split and, for classifiers, accuracy."""
    output = model(split.X)
    if not is_classifier(name):
        return {"loss": F.mse_loss(output, split.y).item()}
    return {
        "loss": cross_entropy(output, split.y).mean().item(),
        "accuracy": (output.argmax(dim=1) == split.y).sum().item() / len(split.y),
    }


def train(name: str, model: nn.Module, train_set: Split, test_set: Split, params: TrainParams,
          on_epoch: Callable[[dict], None] = lambda record: None) -> list[dict]:
    """Train in place; return one record per epoch (train loss/accuracy, test loss/accuracy)."""
    generator = torch.Generator().manual_seed(params.seed)
    step = make_step(name, model, params.lr)
    n = len(train_set.X)
    history = []
    for epoch in range(1, params.epochs + 1):
        loss_sum, correct = 0.0, 0
        for batch, index in enumerate(minibatches(n, params.batch_size, generator), start=1):
            y = train_set.y.index_select(0, index)  # index_select: cheaper than X[index] here
            output, loss = step(train_set.X.index_select(0, index), y)
            if not math.isfinite(loss):
                raise diverged(name, params, f"loss became {loss} at epoch {epoch}, batch {batch}")
            loss_sum += loss * len(index)
            if is_classifier(name):
                correct += (output.argmax(dim=1) == y).sum().item()
        record = {"epoch": epoch, "train_loss": loss_sum / n}
        if is_classifier(name):
            record["train_accuracy"] = correct / n
        record |= {f"test_{key}": value for key, value in evaluate_split(name, model, test_set).items()}
        # The last update of an epoch is only seen here: check the weights and the test loss too.
        if not (math.isfinite(record["test_loss"]) and all(p.isfinite().all() for p in model.parameters())):
            raise diverged(name, params, f"weights or test loss became non-finite after epoch {epoch}")
        history.append(record)
        on_epoch(record)
    return history
