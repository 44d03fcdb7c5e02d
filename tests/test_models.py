"""regression.models: the hand-written softmax and cross-entropy, and the two softmax models agreeing."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from regression.models import (
    SoftmaxRegression,
    SoftmaxRegressionScratch,
    build_model,
    cross_entropy,
    log_softmax,
    softmax,
)
from regression.params import TrainParams
from regression.training import train

EXTREME = torch.tensor([[1000.0, 0.0, -1000.0], [-500.0, -500.0, 80.0], [3.0e4, 3.0e4, -3.0e4]])


def random_logits(seed=0, shape=(16, 10), scale=10.0):
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_softmax_rows_sum_to_one_and_match_torch():
    logits = random_logits()
    probabilities = softmax(logits)
    assert probabilities.shape == logits.shape
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(16))
    assert (probabilities >= 0).all()
    assert torch.allclose(probabilities, torch.softmax(logits, dim=1), atol=1e-6)


def test_softmax_of_extreme_logits_is_finite():
    probabilities = softmax(EXTREME)
    assert torch.isfinite(probabilities).all()
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(3))
    assert torch.allclose(probabilities, torch.softmax(EXTREME, dim=1))


def test_log_softmax_matches_torch():
    logits = random_logits(1)
    assert torch.allclose(log_softmax(logits), torch.log_softmax(logits, dim=1), atol=1e-5)


def test_log_softmax_is_finite_for_extreme_logits():
    """A naive log(exp(x) / sum(exp(x))) gives inf - inf = nan and log(0) = -inf here."""
    got = log_softmax(EXTREME)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, torch.log_softmax(EXTREME, dim=1))
    assert torch.allclose(got[0], torch.tensor([0.0, -1000.0, -2000.0]))


@pytest.mark.parametrize("logits", [random_logits(2, (5, 3)), EXTREME], ids=["random", "extreme"])
def test_cross_entropy_matches_torch_values_and_gradients(logits):
    labels = torch.tensor([2, 0, 1, 1, 0])[:len(logits)]
    ours = logits.clone().requires_grad_()
    theirs = logits.clone().requires_grad_()

    loss = cross_entropy(ours, labels)
    expected = F.cross_entropy(theirs, labels, reduction="none")
    assert loss.shape == (len(logits),)
    assert torch.isfinite(loss).all()
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-5)

    loss.sum().backward()
    expected.sum().backward()
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-6)


def test_cross_entropy_of_a_confident_wrong_answer_is_large_not_inf():
    loss = cross_entropy(torch.tensor([[1000.0, 0.0, -1000.0]]), torch.tensor([2]))
    assert loss.item() == pytest.approx(2000.0)


def test_build_model_kinds_and_unknown_name():
    assert isinstance(build_model("linear", 0.01, 0, n_features=3), nn.Linear)
    assert isinstance(build_model("softmax_scratch", 0.01, 0), SoftmaxRegressionScratch)
    assert isinstance(build_model("softmax_nn", 0.01, 0), SoftmaxRegression)
    with pytest.raises(ValueError, match="resnet"):
        build_model("resnet", 0.01, 0)


def test_initial_weights_are_drawn_with_the_requested_std():
    weight = build_model("softmax_nn", 0.5, 0).linear.weight
    assert weight.std().item() == pytest.approx(0.5, rel=0.05)
    assert weight.mean().abs().item() < 0.05


def test_same_seed_starts_both_softmax_models_alike():
    scratch, concise = build_model("softmax_scratch", 0.01, 7), build_model("softmax_nn", 0.01, 7)
    assert scratch.W.shape == (784, 10)
    assert torch.equal(scratch.W, concise.linear.weight.T)
    assert torch.equal(scratch.b, torch.zeros(10)) and torch.equal(concise.linear.bias, torch.zeros(10))
    assert not torch.equal(build_model("softmax_scratch", 0.01, 8).W, scratch.W)


PARAMS = TrainParams(dataset="fashion-mnist", seed=3, lr=0.1, batch_size=32, epochs=3, init_std=0.01)


def assert_same_softmax_weights(scratch, concise):
    assert torch.allclose(scratch.W, concise.linear.weight.T, atol=1e-5)
    assert torch.allclose(scratch.b, concise.linear.bias, atol=1e-5)


def test_scratch_and_nn_models_train_to_the_same_weights(tiny_fashion):
    train_set, test_set = tiny_fashion
    scratch = build_model("softmax_scratch", PARAMS.init_std, PARAMS.seed)
    concise = build_model("softmax_nn", PARAMS.init_std, PARAMS.seed)
    initial = scratch.W.detach().clone()

    scratch_history = train("softmax_scratch", scratch, train_set, test_set, PARAMS)
    concise_history = train("softmax_nn", concise, train_set, test_set, PARAMS)

    # Training moved the weights (equality is not just two untouched initialisations)...
    assert (scratch.W - initial).abs().max() > 0.01
    assert scratch_history[-1]["test_accuracy"] > 0.5
    # ...and both ways of writing the same model took the same steps.
    assert_same_softmax_weights(scratch, concise)
    for ours, theirs in zip(scratch_history, concise_history):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-5)
        assert ours["test_accuracy"] == theirs["test_accuracy"]


def test_equivalence_with_explicitly_copied_weights(tiny_fashion):
    """Independent of build_model's seeding: give the nn model the scratch model's start."""
    train_set, test_set = tiny_fashion
    scratch = build_model("softmax_scratch", 0.05, 11)
    concise = build_model("softmax_nn", 0.05, 12)
    with torch.no_grad():
        scratch.b.copy_(torch.linspace(-0.1, 0.1, 10))  # a non-zero bias is copied too
        concise.linear.weight.copy_(scratch.W.T)
        concise.linear.bias.copy_(scratch.b)

    train("softmax_scratch", scratch, train_set, test_set, PARAMS)
    train("softmax_nn", concise, train_set, test_set, PARAMS)

    assert_same_softmax_weights(scratch, concise)


def forbid_library_training(monkeypatch):
    """Make torch's optimisers, losses and linear layers raise if anything calls them."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the scratch model must not use this")

    monkeypatch.setattr(torch.optim.Optimizer, "__init__", forbidden)
    monkeypatch.setattr(torch.optim, "SGD", forbidden)
    for name in ("cross_entropy", "nll_loss", "log_softmax", "softmax", "linear"):
        monkeypatch.setattr(F, name, forbidden)
    monkeypatch.setattr(nn.Linear, "forward", forbidden)


def test_scratch_training_uses_no_optimizer_nor_nn_layers(tiny_fashion, monkeypatch):
    train_set, test_set = tiny_fashion
    scratch = build_model("softmax_scratch", 0.01, 0)
    assert not any(isinstance(module, nn.Linear) for module in scratch.modules())
    before = scratch.W.detach().clone()

    forbid_library_training(monkeypatch)
    history = train("softmax_scratch", scratch, train_set, test_set, PARAMS)

    assert len(history) == PARAMS.epochs
    assert not torch.equal(scratch.W, before)


def test_the_forbidding_patch_does_catch_library_training(tiny_fashion, monkeypatch):
    """Control for the test above: the same patch stops the nn model's training."""
    train_set, test_set = tiny_fashion
    concise = build_model("softmax_nn", 0.01, 0)
    forbid_library_training(monkeypatch)
    with pytest.raises(AssertionError, match="must not use"):
        train("softmax_nn", concise, train_set, test_set, PARAMS)
