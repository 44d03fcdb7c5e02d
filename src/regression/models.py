"""The three models, and the softmax and cross-entropy written by hand for the scratch one."""

import torch
from torch import nn

N_FEATURES = 28 * 28
N_CLASSES = 10


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


class SoftmaxRegressionScratch(nn.Module):
    """Softmax regression as two hand-made tensors: logits = X W + b.

    The softmax is applied to these logits (inside `cross_entropy`, or by `softmax` to get
    probabilities), never to the input pixels.

    `nn.Module` is only the container (so the model saves and logs like the others); there is
    no `nn.Linear`, and training updates `W` and `b` by hand.
    """

    def __init__(self, init_std: float, generator: torch.Generator):
        super().__init__()
        # Drawn and stored in nn.Linear's (out, in) layout, so one seed starts both softmax
        # models alike; W is its transpose, a (784, 10) view (which also multiplies faster).
        W = torch.normal(0.0, init_std, (N_CLASSES, N_FEATURES), generator=generator)
        self.W = nn.Parameter(W.T)
        self.b = nn.Parameter(torch.zeros(N_CLASSES))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X.reshape(-1, N_FEATURES) @ self.W + self.b


def linear_layer(n_in: int, n_out: int, init_std: float, generator: torch.Generator) -> nn.Linear:
    """nn.Linear with weights ~ N(0, init_std) and zero bias, as the lesson initialises it."""
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.copy_(torch.normal(0.0, init_std, layer.weight.shape, generator=generator))
        layer.bias.zero_()
    return layer


class SoftmaxRegression(nn.Module):
    """Softmax regression the concise way: flatten, then nn.Linear(784, 10) giving logits."""

    def __init__(self, init_std: float, generator: torch.Generator):
        super().__init__()
        self.linear = linear_layer(N_FEATURES, N_CLASSES, init_std, generator)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.linear(X.reshape(-1, N_FEATURES))


def build_model(name: str, init_std: float, seed: int, n_features: int = 2) -> nn.Module:
    """A freshly initialised model; the same seed gives the same initial weights."""
    generator = torch.Generator().manual_seed(seed)
    if name == "linear":
        return linear_layer(n_features, 1, init_std, generator)
    if name == "softmax_scratch":
        return SoftmaxRegressionScratch(init_std, generator)
    if name == "softmax_nn":
        return SoftmaxRegression(init_std, generator)
    raise ValueError(f"unknown model {name!r}")


def is_classifier(name: str) -> bool:
    return name != "linear"
