"""regression.training: the SGD loop, its history, its determinism and its divergence check."""

import math

import pytest
import torch

from regression import PipelineError
from regression.data import generate_linear
from regression.models import build_model
from regression.params import TrainParams
from regression.training import TrainingDiverged, minibatches, train

TRUE_W, TRUE_B = [2.0, -3.4], 4.2
LINEAR = TrainParams(dataset="synthetic", seed=0, lr=0.05, batch_size=100, epochs=10, init_std=0.01)
SOFTMAX = TrainParams(dataset="fashion-mnist", seed=0, lr=0.1, batch_size=32, epochs=3, init_std=0.01)


@pytest.fixture(scope="module")
def linear_data():
    generator = torch.Generator().manual_seed(0)
    return (generate_linear(1000, TRUE_W, TRUE_B, 0.01, generator),
            generate_linear(200, TRUE_W, TRUE_B, 0.01, generator))


@pytest.fixture(scope="module")
def fashion_data(tiny_fashion):
    return tiny_fashion


def data_for(name, linear_data, fashion_data):
    return (linear_data, LINEAR) if name == "linear" else (fashion_data, SOFTMAX)


def test_linear_regression_recovers_w_and_b(linear_data):
    train_set, test_set = linear_data
    model = build_model("linear", 0.01, 0)
    history = train("linear", model, train_set, test_set, LINEAR)

    w, b = model.weight.detach().reshape(-1).tolist(), model.bias.item()
    assert w == pytest.approx(TRUE_W, abs=0.01)
    assert b == pytest.approx(TRUE_B, abs=0.01)
    assert history[-1]["test_loss"] < 0.001  # the noise variance is 1e-4


@pytest.mark.parametrize("name, keys", [
    ("linear", {"epoch", "train_loss", "test_loss"}),
    ("softmax_scratch", {"epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy"}),
    ("softmax_nn", {"epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy"}),
])
def test_history_has_one_record_per_epoch(name, keys, linear_data, fashion_data):
    (train_set, test_set), params = data_for(name, linear_data, fashion_data)
    seen = []
    history = train(name, build_model(name, params.init_std, params.seed), train_set, test_set,
                    params, on_epoch=seen.append)

    assert [record["epoch"] for record in history] == list(range(1, params.epochs + 1))
    assert seen == history
    for record in history:
        assert set(record) == keys
        assert all(math.isfinite(value) for value in record.values())
        for key in keys & {"train_accuracy", "test_accuracy"}:
            assert 0.0 <= record[key] <= 1.0
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.parametrize("name", ["linear", "softmax_scratch", "softmax_nn"])
def test_training_is_reproducible_for_a_seed(name, linear_data, fashion_data):
    (train_set, test_set), params = data_for(name, linear_data, fashion_data)

    def trained_state(seed):
        p = params.model_copy(update={"seed": seed})
        model = build_model(name, p.init_std, p.seed)
        history = train(name, model, train_set, test_set, p)
        return model.state_dict(), history

    first, first_history = trained_state(0)
    again, again_history = trained_state(0)
    other, _ = trained_state(1)
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert first_history == again_history
    assert not all(torch.equal(first[key], other[key]) for key in first)


def test_only_the_shuffling_seed_changes_the_result(linear_data):
    """params.seed drives the mini-batch order, not only the initial weights."""
    train_set, test_set = linear_data
    results = []
    for seed in (0, 1):
        model = build_model("linear", 0.01, 0)  # same start
        train("linear", model, train_set, test_set, LINEAR.model_copy(update={"seed": seed, "epochs": 1}))
        results.append(model.weight.detach().clone())
    assert not torch.equal(*results)


@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (5, 8), (1, 1)])
def test_minibatches_cover_every_index_once_per_epoch(n, batch_size):
    generator = torch.Generator().manual_seed(0)
    batches = list(minibatches(n, batch_size, generator))

    sizes = [len(batch) for batch in batches]
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(n))
    assert all(batch.dtype == torch.int64 for batch in batches)


def test_minibatches_shuffle_differently_each_epoch():
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.cat(list(minibatches(100, 32, generator))) for _ in range(2))
    assert not torch.equal(first, torch.arange(100))
    assert not torch.equal(first, second)
    assert torch.equal(second.sort().values, torch.arange(100))


@pytest.mark.parametrize("name, lr", [
    ("linear", 1e10),
    # Cross-entropy's gradient is bounded, so the softmax models only overflow float32 for a
    # learning rate near its maximum (about 3.4e38).
    ("softmax_scratch", 1e38),
    ("softmax_nn", 1e38),
])
def test_divergence_raises_naming_the_learning_rate(name, lr, linear_data, fashion_data):
    (train_set, test_set), params = data_for(name, linear_data, fashion_data)
    params = params.model_copy(update={"lr": lr})
    with pytest.raises(TrainingDiverged, match=rf"train\.{name}\.lr") as caught:
        train(name, build_model(name, params.init_std, params.seed), train_set, test_set, params)
    assert isinstance(caught.value, PipelineError)  # reported by a stage in one line
    assert repr(lr) in str(caught.value)
