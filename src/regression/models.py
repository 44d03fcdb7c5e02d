"""The architecture table, its models, and the softmax and cross-entropy written by hand.

`MODELS` is the one place that says, for each architecture, the kind of data it takes (images,
so it classifies, or features, so it regresses), how it is built, its loss and how it steps;
training, evaluation, the report, the params check and the served model read these fields. An
architecture's own params (the MLP's `hidden`) are the keyword parameters of its class after the
config, typed: `ModelSpec.params` makes them keys of its entries in params.yaml.
A model's shape is its `ModelConfig` (its architecture, the params that shape it), saved with
its weights (`model_bytes`), so that anything can rebuild it from the file alone (`load_model`).
How it starts (`init_std`, the seed) is training's business: `initialise_`.
"""

import dataclasses
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from regression import PipelineError
from regression.data import FEATURES, IMAGES
from regression.params_schema import PositiveInt, TrainParams, params_of_architecture


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model before loading its weights."""
    name: str                     # the model's name: a key of `train` in params.yaml
    architecture: str             # a key of MODELS
    n_features: int
    n_outputs: int
    classes: tuple[str, ...] = ()  # class names in output order, for classifiers
    params: dict = field(default_factory=dict)  # the architecture's own params, e.g. {"hidden": 256}


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log softmax over each row, stable for any logits.

    Subtracting the row max before `exp` keeps every exponent <= 0, so nothing overflows,
    and taking the log of the sum (not of each probability) keeps tiny probabilities finite.
    """
    shifted = logits - logits.max(dim=1, keepdim=True).values
    return shifted - shifted.exp().sum(dim=1, keepdim=True).log()


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return log_softmax(logits).exp()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy: minus the log-probability `gather`ed at each true label."""
    return -log_softmax(logits).gather(1, labels.reshape(-1, 1)).squeeze(1)


def _normal_(weight: torch.Tensor, init_std: float, generator: torch.Generator) -> None:
    weight.copy_(torch.normal(0.0, init_std, weight.shape, generator=generator))


class _Concise(nn.Module):
    """A model the concise way: one nn.Linear(n_features, n_outputs), started as the lesson starts."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.linear = nn.Linear(config.n_features, config.n_outputs)

    @torch.no_grad()
    def initialise_(self, init_std: float, generator: torch.Generator) -> None:
        """Weights ~ N(0, init_std), zero bias, as the lesson starts."""
        _normal_(self.linear.weight, init_std, generator)
        self.linear.bias.zero_()


class LinearRegression(_Concise):
    """Linear regression the concise way: nn.Linear(n_features, 1)."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.linear(X)


class SoftmaxRegression(_Concise):
    """Softmax regression the concise way: flatten, then nn.Linear(pixels, classes) giving logits."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.linear(X.reshape(-1, self.linear.in_features))


class SoftmaxRegressionScratch(nn.Module):
    """Softmax regression as two hand-made tensors: logits = X W + b.

    The softmax is applied to these logits (inside `cross_entropy`, or by `softmax` to get
    probabilities), never to the input pixels. `nn.Module` is only the container (so the model
    saves and logs like the others); there is no `nn.Linear`, and training updates `W` and `b`
    by hand.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        # W is (features, classes) as in the lesson, stored as the transpose of a (classes,
        # features) tensor: nn.Linear's layout, so one seed starts both softmax models alike
        # (and X @ W multiplies faster this way round).
        self.W = nn.Parameter(torch.zeros(config.n_outputs, config.n_features).T)
        self.b = nn.Parameter(torch.zeros(config.n_outputs))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X.reshape(-1, self.W.shape[0]) @ self.W + self.b

    @torch.no_grad()
    def initialise_(self, init_std: float, generator: torch.Generator) -> None:
        """W ~ N(0, init_std) drawn as nn.Linear draws its weight, zero b."""
        _normal_(self.W.T, init_std, generator)
        self.b.zero_()


class MLP(nn.Module):
    """The multilayer perceptron of the lesson's next chapter: flatten, nn.Linear(pixels, hidden), ReLU,
    nn.Linear(hidden, classes) giving logits."""

    def __init__(self, config: ModelConfig, hidden: PositiveInt):
        super().__init__()
        self.hidden = nn.Linear(config.n_features, hidden)
        self.output = nn.Linear(hidden, config.n_outputs)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.hidden(X.reshape(-1, self.hidden.in_features))))

    @torch.no_grad()
    def initialise_(self, init_std: float, generator: torch.Generator) -> None:
        """Both weights ~ N(0, init_std), the hidden layer's drawn first; zero biases."""
        for layer in (self.hidden, self.output):
            _normal_(layer.weight, init_std, generator)
            layer.bias.zero_()


@dataclass(frozen=True)
class ModelSpec:
    takes: str         # the kind of data it learns from: IMAGES or FEATURES (a params entry's dataset)
    build: Callable[..., nn.Module]  # the class: (config, **its own params) -> the model
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # per-example loss
    sgd_by_hand: bool  # summed loss and a hand-written SGD step, or mean loss and optim.SGD

    @property
    def classifies(self) -> bool:
        """A classifier (images in, class labels, accuracy, class names), or a regressor (features in)."""
        return self.takes == IMAGES

    @property
    def loss_name(self) -> str:
        """What its loss measures, for people: charts compare like with like."""
        return "cross-entropy" if self.classifies else "mean squared error"

    @cached_property
    def params(self) -> type[TrainParams]:
        """What an entry of this architecture in params.yaml holds: TrainParams and its own params."""
        return params_of_architecture(self.build)


MODELS = {
    "linear": ModelSpec(FEATURES, LinearRegression, partial(F.mse_loss, reduction="none"), sgd_by_hand=False),
    "softmax_scratch": ModelSpec(IMAGES, SoftmaxRegressionScratch, cross_entropy, sgd_by_hand=True),
    "softmax_nn": ModelSpec(IMAGES, SoftmaxRegression, partial(F.cross_entropy, reduction="none"),
                            sgd_by_hand=False),
    "mlp": ModelSpec(IMAGES, MLP, partial(F.cross_entropy, reduction="none"), sgd_by_hand=False),
}


class ModelFileError(PipelineError):
    """A model file is missing or does not hold a model of the table."""


def build_model(config: ModelConfig) -> nn.Module:
    return MODELS[config.architecture].build(config, **config.params)


def model_bytes(model: nn.Module, config: ModelConfig) -> bytes:
    """The config and the weights in one torch.save file; the same model gives the same bytes."""
    buffer = io.BytesIO()
    torch.save({"config": dataclasses.asdict(config), "state_dict": model.state_dict()}, buffer)
    return buffer.getvalue()


def load_model(path: str | Path) -> tuple[nn.Module, ModelConfig]:
    """Rebuild a model from its file, weights loaded, in eval mode. No pickle: weights_only."""
    try:
        saved = torch.load(path, weights_only=True)
        config = ModelConfig(**{**saved["config"], "classes": tuple(saved["config"]["classes"])})
        model = build_model(config)
        model.load_state_dict(saved["state_dict"])
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing") from None
    except Exception as error:  # torch and the config raise assorted types for a bad file
        raise ModelFileError(f"{path}: not a model file of this project "
                             f"({type(error).__name__}: {error})") from None
    return model.eval(), config
