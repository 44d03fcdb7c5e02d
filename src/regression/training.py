"""Mini-batch SGD over in-memory tensors, one epoch at a time, as the lesson trains.

The loop keeps each batch's loss and predictions as tensors and reads them once per epoch:
no `.item()` per batch. Each epoch ends with the loss (and accuracy) on the validation (`val`) and
test splits; the test outputs of the last epoch are the evaluation's (nothing is computed twice).
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import psutil
import torch
from torch import nn, optim

from regression import PipelineError
from regression.evaluation import score
from regression.headline import ACCURACY, LOSS, TRAIN, metric
from regression.models import ModelConfig, ModelSpec, build_model
from regression.params_schema import TrainParams, own_params

# Training stops as diverged when a batch loss is not finite or exceeds this many times the
# first batch's loss (the loss of the untrained model). SGD on these convex losses only gets
# there when the learning rate is too large.
DIVERGENCE_FACTOR = 100.0


class Split(NamedTuple):
    X: torch.Tensor  # as stored: uint8 pixels, or float32 features
    y: torch.Tensor  # int64 class labels, or float32 (n, 1) targets


class TrainingDiverged(PipelineError):
    """The loss became NaN, infinite, or far larger than where it started."""


def as_splits(arrays: dict[str, tuple[np.ndarray, np.ndarray]], spec: ModelSpec) -> dict[str, Split]:
    """Tensors over the loaded arrays (no copy); labels as int64 for a classifier."""
    return {name: Split(torch.from_numpy(X), torch.from_numpy(y).long() if spec.classifies
                        else torch.from_numpy(y))
            for name, (X, y) in arrays.items()}


def features(X: torch.Tensor) -> torch.Tensor:
    """Rows of float32 features: uint8 pixels scaled to [0, 1] and flattened, as ToTensor gives."""
    if X.dtype == torch.uint8:
        return X.reshape(len(X), -1).to(torch.float32).div_(255.0)
    return X


def new_model(name: str, train_set: Split, classes: tuple[str, ...], params: TrainParams
              ) -> tuple[nn.Module, ModelConfig]:
    """Model `name` of `params.architecture`, shaped by its own params and for `train_set`'s
    features and outputs (a class each, for a classifier), initialised as `params` say; and its config."""
    config = ModelConfig(name, params.architecture, n_features=features(train_set.X[:1]).shape[1],
                         n_outputs=len(classes) or train_set.y.shape[1], classes=classes,
                         params=own_params(params))
    refuse_if_too_big(name, config)
    model = build_model(config)
    model.initialise_(params.init_std, torch.Generator().manual_seed(params.seed))
    return model, config


def refuse_if_too_big(name: str, config: ModelConfig, available: int | None = None) -> None:
    """A ParamsError naming the model's own params if training it would need more memory than is
    free (`available` bytes, else the machine's): its weights, their gradients and the step's
    temporaries, float32, counted on torch's meta device (nothing allocated)."""
    with torch.device("meta"):
        size = sum(p.numel() for p in build_model(config).parameters())
    need, free = size * 4 * 3, available if available is not None else psutil.virtual_memory().available
    if need > free:
        own = ", ".join(f"train.{name}.{key} = {value!r}" for key, value in config.params.items()) or f"train.{name}"
        raise PipelineError(f"{own}: a model of {size:,} parameters needs about {need / 2**30:,.1f} GiB of "
                            f"memory to train, and {free / 2**30:,.1f} GiB is free here; use a smaller value")


@torch.no_grad()
def outputs_of(model: nn.Module, X: torch.Tensor, rows: int = 2000) -> torch.Tensor:
    """The model's outputs for all of X, `rows` at a time: no float copy of a whole split in memory."""
    return torch.cat([model(features(X[start:start + rows])) for start in range(0, len(X), rows)])


def minibatches(n: int, batch_size: int, generator: torch.Generator):
    """Index tensors of one shuffled pass over n examples (the last batch may be short)."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def sgd_(parameters, lr: float, batch_size: int, weight_decay: float) -> None:
    """The hand-written SGD step: gradients are of the summed loss, so divide by the batch.

    Weight decay adds `weight_decay * parameter` to each gradient (an L2 penalty of
    weight_decay / 2 times the squared weights on the mean loss), as torch's SGD does.
    """
    with torch.no_grad():
        for parameter in parameters:
            if weight_decay:
                parameter -= lr * (parameter.grad / batch_size + weight_decay * parameter)
            else:
                parameter -= lr * parameter.grad / batch_size
            parameter.grad.zero_()


def learning_rate(params: TrainParams, epoch: int) -> float:
    """The learning rate of `epoch` (1-based) under `params.schedule`.

    constant: `lr` throughout. cosine: from `lr` down along half a cosine, epoch by epoch
    (lr * (1 + cos(pi * (epoch - 1) / epochs)) / 2). step: `lr`, a tenth of it from half the
    epochs on, a hundredth from three quarters on.
    """
    if params.schedule == "cosine":
        return params.lr * (1 + math.cos(math.pi * (epoch - 1) / params.epochs)) / 2
    if params.schedule == "step":
        done = (epoch - 1) / params.epochs
        return params.lr * (1.0 if done < 0.5 else 0.1 if done < 0.75 else 0.01)
    return params.lr


def make_step(spec: ModelSpec, model: nn.Module, params: TrainParams) -> Callable:
    """One SGD update on a batch at a given learning rate; returns the batch's outputs and mean
    loss, both detached."""
    parameters = list(model.parameters())
    weight_decay = params.weight_decay
    if spec.sgd_by_hand:
        def step(X, y, lr):
            output = model(X)
            loss = spec.loss(output, y).sum()
            loss.backward()
            sgd_(parameters, lr, len(y), weight_decay)
            return output.detach(), loss.detach() / len(y)
        return step

    # foreach=False: for two small tensors a plain loop is cheaper than the batched kernels.
    optimizer = optim.SGD(parameters, lr=params.lr, weight_decay=weight_decay, foreach=False)

    def step(X, y, lr):
        for group in optimizer.param_groups:
            group["lr"] = lr
        output = model(X)
        loss = spec.loss(output, y).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return output.detach(), loss.detach()
    return step


def train(name: str, spec: ModelSpec, model: nn.Module, splits: dict[str, Split], params: TrainParams,
          on_epoch: Callable[[dict], None] = lambda record: None) -> tuple[list[dict], dict]:
    """Train in place. Returns one record per epoch and the last epoch's outputs by split.

    A record holds the epoch, train loss (and accuracy) and the loss (and accuracy) on every
    other split, e.g. `val_accuracy`, `test_loss`.
    """
    generator = torch.Generator().manual_seed(params.seed)
    step = make_step(spec, model, params)
    train_set = splits["train"]
    n = len(train_set.y)
    first_loss, history = None, []
    for epoch in range(1, params.epochs + 1):
        batches = list(minibatches(n, params.batch_size, generator))
        lr = learning_rate(params, epoch)
        losses, predictions = [], []
        for index in batches:
            y = train_set.y.index_select(0, index)  # index_select: cheaper than y[index] here
            output, loss = step(features(train_set.X.index_select(0, index)), y, lr)
            losses.append(loss)
            if spec.classifies:
                predictions.append(output.argmax(dim=1))

        batch_losses = torch.stack(losses).double()
        first_loss = first_loss if first_loss is not None else batch_losses[0].item()
        worst = batch_losses.max().item()
        if not math.isfinite(worst) or worst > DIVERGENCE_FACTOR * first_loss:
            raise diverged(name, params, f"a batch loss of epoch {epoch} reached {worst:.4g}, "
                           f"from {first_loss:.4g} at the start")
        sizes = torch.tensor([len(index) for index in batches], dtype=batch_losses.dtype)
        record = {"epoch": epoch, metric(TRAIN, LOSS): (batch_losses @ sizes).item() / n}
        if spec.classifies:
            record[metric(TRAIN, ACCURACY)] = (torch.cat(predictions) == train_set.y[torch.cat(batches)]).sum().item() / n
        outputs = {split: outputs_of(model, s.X) for split, s in splits.items() if split != TRAIN}
        for split, split_outputs in outputs.items():
            scores = score(spec, split_outputs, splits[split].y)
            record |= {metric(split, key): value for key, value in scores.items()}
        # The last update of an epoch is only seen here: check the weights and the losses too.
        if not (all(math.isfinite(v) for v in record.values())
                and all(p.isfinite().all() for p in model.parameters())):
            raise diverged(name, params, f"weights or losses became non-finite after epoch {epoch}")
        history.append(record)
        on_epoch(record)
    return history, outputs


def diverged(name: str, params: TrainParams, what: str) -> TrainingDiverged:
    return TrainingDiverged(f"train.{name}: training diverged: {what} (train.{name}.lr = {params.lr}); "
                            "try a smaller learning rate")
