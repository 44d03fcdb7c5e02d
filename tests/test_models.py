"""regression.models: hand-written softmax and cross-entropy, the two softmax models agreeing, model files."""

import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from idx_files import CLASSES
from regression.models import (
    MLP,
    MODELS,
    LinearRegression,
    ModelConfig,
    ModelFileError,
    SoftmaxRegression,
    SoftmaxRegressionScratch,
    build_model,
    cross_entropy,
    load_model,
    log_softmax,
    model_bytes,
    softmax,
)

EXTREME = torch.tensor([[1000.0, 0.0, -1000.0], [-500.0, -500.0, 80.0], [3.0e4, 3.0e4, -3.0e4]])
CONFIGS = {
    "linear": ModelConfig("linear", "linear", n_features=2, n_outputs=1),
    "softmax_scratch": ModelConfig("softmax_scratch", "softmax_scratch", n_features=784, n_outputs=10,
                                   classes=CLASSES),
    "softmax_nn": ModelConfig("softmax_nn", "softmax_nn", n_features=784, n_outputs=10, classes=CLASSES),
    "mlp": ModelConfig("mlp_narrow", "mlp", n_features=784, n_outputs=10, classes=CLASSES, params={"hidden": 16}),
}


def random_logits(seed=0, shape=(16, 10), scale=10.0):
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def initialised(config: ModelConfig, init_std: float = 0.01, seed: int = 0) -> nn.Module:
    model = build_model(config)
    model.initialise_(init_std, torch.Generator().manual_seed(seed))
    return model


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
def test_log_softmax_gradient_matches_torch(logits):
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    weights = torch.arange(logits.numel(), dtype=torch.float32).reshape(logits.shape)
    (log_softmax(ours) * weights).sum().backward()
    (torch.log_softmax(theirs, dim=1) * weights).sum().backward()
    assert torch.isfinite(ours.grad).all()
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-4)


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
    assert torch.isfinite(ours.grad).all()
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-6)


def test_cross_entropy_of_a_confident_wrong_answer_is_large_not_inf():
    loss = cross_entropy(torch.tensor([[1000.0, 0.0, -1000.0]]), torch.tensor([2]))
    assert loss.item() == pytest.approx(2000.0)


@pytest.mark.parametrize("name, kind", [
    ("linear", LinearRegression),
    ("softmax_scratch", SoftmaxRegressionScratch),
    ("softmax_nn", SoftmaxRegression),
    ("mlp", MLP),
])
def test_build_model_gives_the_table_s_model_of_the_config_s_shape(name, kind):
    config = CONFIGS[name]
    model = build_model(config)
    assert type(model) is kind and MODELS[name].build is kind
    output = model(torch.zeros(4, config.n_features))
    assert output.shape == (4, config.n_outputs)


def test_every_architecture_of_the_table_is_covered_here():
    assert set(CONFIGS) == set(MODELS)


def test_the_mlp_is_the_lessons_and_its_width_comes_from_its_config():
    model = build_model(CONFIGS["mlp"])
    layers = [(type(m).__name__, getattr(m, "in_features", None), getattr(m, "out_features", None))
              for m in model.modules() if isinstance(m, nn.Linear)]
    assert layers == [("Linear", 784, 16), ("Linear", 16, 10)]
    X = torch.randn(3, 784, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # ReLU between the layers: logits = W2 relu(W1 x + b1) + b2
        expected = model.output(torch.clamp(model.hidden(X), min=0))
        assert torch.equal(model(X), expected)
        assert not torch.allclose(model(X), model.output(model.hidden(X)))


def test_an_architectures_own_params_are_its_class_s_typed_parameters():
    from pydantic import ValidationError

    common = {"architecture": "mlp", "dataset": "fashion-mnist", "seed": 0, "lr": 0.1, "batch_size": 256,
              "epochs": 10, "init_std": 0.01}
    assert MODELS["mlp"].params(**common, hidden=256).hidden == 256
    for bad in ({}, {"hidden": 0}, {"hidden": 256, "width": 3}):
        with pytest.raises(ValidationError):
            MODELS["mlp"].params(**common, **bad)
    with pytest.raises(ValidationError, match="hidden"):
        MODELS["linear"].params(**common | {"architecture": "linear", "dataset": "synthetic"}, hidden=256)


def test_same_seed_starts_the_mlp_alike_and_draws_both_layers():
    first, again = initialised(CONFIGS["mlp"], seed=3), initialised(CONFIGS["mlp"], seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(initialised(CONFIGS["mlp"], seed=4).hidden.weight, first.hidden.weight)
    assert first.output.weight.std().item() == pytest.approx(0.01, rel=0.3)
    assert torch.equal(first.hidden.bias, torch.zeros(16)) and torch.equal(first.output.bias, torch.zeros(10))


def test_build_model_of_an_unknown_kind_raises():
    with pytest.raises(KeyError, match="resnet"):
        build_model(ModelConfig("resnet", "resnet", 3, 1))


def test_models_of_images_take_images_or_rows():
    image = torch.rand(2, 28, 28)
    for name in ("softmax_scratch", "softmax_nn", "mlp"):
        model = initialised(CONFIGS[name])
        assert torch.equal(model(image), model(image.reshape(2, 784)))


def test_initial_weights_are_drawn_with_the_requested_std():
    model = initialised(CONFIGS["softmax_nn"], init_std=0.5)
    assert model.linear.weight.std().item() == pytest.approx(0.5, rel=0.05)
    assert model.linear.weight.mean().abs().item() < 0.05
    assert torch.equal(model.linear.bias, torch.zeros(10))


def test_same_seed_starts_both_softmax_models_alike():
    scratch = initialised(CONFIGS["softmax_scratch"], seed=7)
    concise = initialised(CONFIGS["softmax_nn"], seed=7)
    assert scratch.W.shape == (784, 10)
    assert torch.equal(scratch.W, concise.linear.weight.T)
    assert torch.equal(scratch.b, torch.zeros(10)) and torch.equal(concise.linear.bias, torch.zeros(10))
    assert not torch.equal(initialised(CONFIGS["softmax_scratch"], seed=8).W, scratch.W)


def assert_same_softmax_weights(scratch, concise):
    assert torch.allclose(scratch.W, concise.linear.weight.T, atol=1e-5)
    assert torch.allclose(scratch.b, concise.linear.bias, atol=1e-5)


def test_scratch_and_nn_models_train_to_the_same_weights_and_history(trainable):
    scratch, concise = trainable("softmax_scratch"), trainable("softmax_nn")
    assert torch.equal(scratch.model.W, concise.model.linear.weight.T)
    initial = scratch.model.W.detach().clone()

    scratch_history, _ = scratch.train()
    concise_history, _ = concise.train()

    # Training moved the weights (equality is not just two untouched initialisations)...
    assert (scratch.model.W - initial).abs().max() > 0.01
    assert scratch_history[-1]["test_accuracy"] > 0.5
    # ...and both ways of writing the same model took the same steps.
    assert_same_softmax_weights(scratch.model, concise.model)
    assert len(scratch_history) == len(concise_history) == scratch.params.epochs
    for ours, theirs in zip(scratch_history, concise_history):
        assert ours.keys() == theirs.keys()
        assert ours == pytest.approx(theirs, abs=1e-5)


def test_equivalence_with_explicitly_copied_weights(trainable):
    """Independent of the initialisation: give the nn model the scratch model's start."""
    scratch, concise = trainable("softmax_scratch", init_std=0.05), trainable("softmax_nn", init_std=0.01)
    with torch.no_grad():
        scratch.model.b.copy_(torch.linspace(-0.1, 0.1, 10))  # a non-zero bias is copied too
        concise.model.linear.weight.copy_(scratch.model.W.T)
        concise.model.linear.bias.copy_(scratch.model.b)

    scratch.train()
    concise.train()

    assert_same_softmax_weights(scratch.model, concise.model)


def forbid_library_training(monkeypatch):
    """Make torch's optimisers, losses and linear layers raise if anything calls them."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the scratch model must not use this")

    monkeypatch.setattr(torch.optim.Optimizer, "__init__", forbidden)
    monkeypatch.setattr(torch.optim, "SGD", forbidden)
    for name in ("cross_entropy", "nll_loss", "log_softmax", "softmax", "linear"):
        monkeypatch.setattr(F, name, forbidden)
    monkeypatch.setattr(nn.Linear, "forward", forbidden)


def test_scratch_training_uses_no_optimizer_nor_nn_layers(trainable, monkeypatch):
    scratch = trainable("softmax_scratch")
    assert not any(isinstance(module, nn.Linear) for module in scratch.model.modules())
    before = scratch.model.W.detach().clone()

    forbid_library_training(monkeypatch)
    history, _ = scratch.train()

    assert len(history) == scratch.params.epochs
    assert not torch.equal(scratch.model.W, before)


def test_the_forbidding_patch_does_catch_library_training(trainable, monkeypatch):
    """Control for the test above: the same patch stops the nn model's training."""
    concise = trainable("softmax_nn")
    forbid_library_training(monkeypatch)
    with pytest.raises(AssertionError, match="must not use"):
        concise.train()


@pytest.fixture(params=list(MODELS))
def trained_file(request, tmp_path):
    """(path, model, config) of a model of the table, not at its initial weights, saved to a file."""
    config = CONFIGS[request.param]
    model = initialised(config, init_std=0.3, seed=5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.linspace(-1, 1, parameter.numel()).reshape(parameter.shape))
    path = tmp_path / f"{config.name}.pt"
    path.write_bytes(model_bytes(model, config))
    return path, model, config


def test_model_file_rebuilds_the_model_from_the_file_alone(trained_file):
    path, model, config = trained_file
    loaded, loaded_config = load_model(path)

    assert loaded_config == config
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in model.state_dict().items())
    X = torch.rand(5, config.n_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(X), model(X))
        assert not torch.equal(loaded(X), build_model(config)(X))  # the weights came from the file


def test_same_model_gives_identical_bytes(trained_file):
    path, model, config = trained_file
    assert model_bytes(model, config) == path.read_bytes()
    loaded, _ = load_model(path)
    assert model_bytes(loaded, config) == path.read_bytes()
    with torch.no_grad():
        next(loaded.parameters()).add_(1.0)
    assert model_bytes(loaded, config) != path.read_bytes()


def saved(obj) -> callable:
    def write(path):
        torch.save(obj, path)
    return write


def corrupted(transform) -> callable:
    def write(path):
        config = CONFIGS["softmax_nn"]
        path.write_bytes(transform(model_bytes(initialised(config), config)))
    return write


@pytest.mark.parametrize("write", [
    pytest.param(corrupted(lambda raw: raw[:len(raw) // 2]), id="truncated"),
    pytest.param(corrupted(lambda raw: b""), id="empty"),
    pytest.param(corrupted(lambda raw: b"<html>404 Not Found</html>" * 40), id="garbage"),
    pytest.param(saved(torch.zeros(3)), id="a-tensor",
                 marks=pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")),  # tensor["config"]
    pytest.param(saved({"state_dict": {}}), id="no-config"),
    pytest.param(saved({"config": {"name": "resnet", "architecture": "resnet", "n_features": 3, "n_outputs": 1,
                                   "classes": [], "params": {}}, "state_dict": {}}), id="unknown-architecture"),
    pytest.param(saved({"config": {"name": "linear", "architecture": "linear", "n_features": 3, "n_outputs": 1,
                                   "classes": [], "params": {}, "hidden": 8}, "state_dict": {}}),
                 id="unknown-config-field"),
    pytest.param(saved({"config": {"name": "linear", "architecture": "linear", "n_features": 3, "n_outputs": 1,
                                   "classes": [], "params": {"hidden": 8}}, "state_dict": {}}),
                 id="a-param-the-architecture-has-not"),
    pytest.param(saved({"config": {"name": "linear", "architecture": "linear", "n_features": 3, "n_outputs": 1,
                                   "classes": [], "params": {}},
                        "state_dict": nn.Linear(2, 1).state_dict()}), id="weights-of-another-shape"),
])
def test_foreign_or_corrupt_file_raises_model_file_error_naming_it(tmp_path, write):
    path = tmp_path / "model.pt"
    write(path)
    # ... and saying what was wrong: the error met and its type.
    said = r"(?s)" + re.escape(str(path)) + r": not a model file of this project \(\w+Error: .*\)$"
    with pytest.raises(ModelFileError, match=said):
        load_model(path)


def test_missing_model_file_raises_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match=re.escape(str(tmp_path / "model.pt")) + ": missing"):
        load_model(tmp_path / "model.pt")


class TouchOnLoad:
    """Unpickling this calls Path.touch(marker): arbitrary code, as a malicious file would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return type(self.marker).touch, (self.marker,)


def test_model_file_is_loaded_without_running_pickled_code(tmp_path):
    marker, path = tmp_path / "code-ran", tmp_path / "model.pt"
    config = CONFIGS["linear"]
    torch.save({"config": TouchOnLoad(marker), "state_dict": build_model(config).state_dict()}, path)

    with pytest.raises(ModelFileError, match=re.escape(str(path))):
        load_model(path)
    assert not marker.exists()

    # Control: a full unpickler does run it (so the check above could fail).
    torch.load(path, weights_only=False)
    assert marker.exists()
