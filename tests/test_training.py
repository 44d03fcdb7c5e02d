"""regression.training: the SGD loop, its history, determinism, batch order and divergence check."""

import math
import re

import numpy as np
import pytest
import torch

from regression import PipelineError
from regression.models import MODELS
from regression.training import TrainingDiverged, as_splits, features, minibatches

MODEL_NAMES = list(MODELS)  # an architecture each, trained as the model of the same name


def test_linear_regression_recovers_w_and_b(trainable):
    linear = trainable("linear")  # lr 0.05, batch 100, 10 epochs on 1000 examples
    history, _ = linear.train()

    w, b = linear.model.linear.weight.detach().reshape(-1).tolist(), linear.model.linear.bias.item()
    assert w == pytest.approx(linear.meta["true_w"], abs=0.01)  # [2, -3.4]
    assert b == pytest.approx(linear.meta["true_b"], abs=0.01)  # 4.2
    assert history[-1]["test_loss"] < 0.001  # the noise variance is 1e-4


@pytest.mark.parametrize("validation", [0, 40], ids=["train-test", "with-validation"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_history_has_one_record_per_epoch_with_the_task_s_keys(trainable, name, validation):
    setup = trainable(name, validation=validation)
    seen = []
    history, outputs = setup.train(on_epoch=seen.append)

    splits = ["val", "test"] if validation else ["test"]
    keys = {"epoch", "train_loss"} | {f"{split}_loss" for split in splits}
    if setup.spec.classifies:
        keys |= {"train_accuracy"} | {f"{split}_accuracy" for split in splits}
    assert [record["epoch"] for record in history] == list(range(1, setup.params.epochs + 1))
    assert seen == history
    for record in history:
        assert set(record) == keys
        assert all(math.isfinite(value) for value in record.values())
        assert all(0.0 <= record[key] <= 1.0 for key in keys if key.endswith("accuracy"))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(outputs) == set(splits)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_last_outputs_are_the_trained_model_s_on_each_split(trainable, name):
    setup = trainable(name, validation=40)
    history, outputs = setup.train()
    with torch.no_grad():
        for split in ("val", "test"):
            X, y = setup.splits[split]
            expected = setup.model(features(X))
            assert torch.equal(outputs[split], expected)
            assert history[-1][f"{split}_loss"] == pytest.approx(setup.spec.loss(expected, y).mean().item())


def trained(trainable, name, seed, **params):
    setup = trainable(name, seed=seed, **params)
    history, _ = setup.train()
    return setup.model.state_dict(), history


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_is_reproducible_for_a_seed_and_differs_across_seeds(trainable, name):
    first, first_history = trained(trainable, name, 0)
    again, again_history = trained(trainable, name, 0)
    other, other_history = trained(trainable, name, 1)
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert first_history == again_history
    assert not all(torch.equal(first[key], other[key]) for key in first)
    assert first_history != other_history


def test_the_seed_also_drives_the_batch_order(trainable):
    """params.seed shuffles the mini-batches, not only the initial weights."""
    results = []
    for seed in (0, 1):
        setup = trainable("linear", epochs=1)  # same start
        setup.params = setup.params.model_copy(update={"seed": seed})
        setup.train()
        results.append(setup.model.linear.weight.detach().clone())
    assert not torch.equal(*results)


def recorded_batches(setup) -> list[list[int]]:
    """Train, recording the training rows each step saw, as row numbers of the training set."""
    row_of = {row.tobytes(): i for i, row in enumerate(setup.splits["train"].X.numpy())}
    assert len(row_of) == len(setup.splits["train"].X)  # every row is distinct
    batches = []

    def record(module, inputs):
        if torch.is_grad_enabled():  # a training step, not the evaluation of a split
            batches.append([row_of[row.tobytes()] for row in inputs[0].numpy()])
    setup.model.register_forward_pre_hook(record)
    setup.train()
    return batches


def test_each_epoch_takes_every_example_once_in_the_seeded_minibatch_order(trainable):
    setup = trainable("linear", epochs=3, batch_size=300, seed=4)
    batches = recorded_batches(setup)

    generator = torch.Generator().manual_seed(4)
    expected = [batch.tolist() for _ in range(3) for batch in minibatches(1000, 300, generator)]
    assert batches == expected
    assert [len(batch) for batch in batches] == [300, 300, 300, 100] * 3
    for epoch in range(3):
        assert sorted(sum(batches[4 * epoch:4 * epoch + 4], [])) == list(range(1000))


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


def reference_history(setup) -> list[dict]:
    """The lesson's loop, reading every batch's loss and hits with `.item()` as it goes."""
    spec, model, p = setup.spec, setup.model, setup.params
    X_train, y_train = features(setup.splits["train"].X), setup.splits["train"].y
    n = len(y_train)
    generator = torch.Generator().manual_seed(p.seed)
    optimizer = None if spec.sgd_by_hand else torch.optim.SGD(model.parameters(), lr=p.lr)
    history = []
    for epoch in range(1, p.epochs + 1):
        total_loss, hits = 0.0, 0
        for index in minibatches(n, p.batch_size, generator):
            X, y = X_train[index], y_train[index]
            output = model(X)
            loss = spec.loss(output, y)
            total_loss += loss.mean().item() * len(y)
            if spec.classifies:
                hits += (output.argmax(dim=1) == y).sum().item()
            if spec.sgd_by_hand:
                loss.sum().backward()
                with torch.no_grad():
                    for parameter in model.parameters():
                        parameter -= p.lr * parameter.grad / len(y)
                        parameter.grad.zero_()
            else:
                optimizer.zero_grad()
                loss.mean().backward()
                optimizer.step()
        record = {"epoch": epoch, "train_loss": total_loss / n}
        if spec.classifies:
            record["train_accuracy"] = hits / n
        with torch.no_grad():
            for split in ("val", "test"):
                if split in setup.splits:
                    X, y = setup.splits[split]
                    output = model(features(X))
                    record[f"{split}_loss"] = spec.loss(output, y).mean().item()
                    if spec.classifies:
                        record[f"{split}_accuracy"] = (output.argmax(dim=1) == y).sum().item() / len(y)
        history.append(record)
    return history


@pytest.mark.parametrize("name, params", [
    ("linear", {"batch_size": 300, "epochs": 3}),  # the last batch of each epoch is short
    ("softmax_scratch", {"batch_size": 48}),
    ("softmax_nn", {"batch_size": 48}),
    ("mlp", {"batch_size": 48}),
])
def test_per_epoch_reading_equals_a_per_batch_item_loop(trainable, name, params):
    history, _ = trainable(name, validation=30, **params).train()
    expected = reference_history(trainable(name, validation=30, **params))

    assert [record.keys() for record in history] == [record.keys() for record in expected]
    accuracies = sorted(key for key in history[0] if key.endswith("_accuracy"))
    if MODELS[name].classifies:  # the exact check below must not check nothing
        assert accuracies == ["test_accuracy", "train_accuracy", "val_accuracy"]
    for ours, theirs in zip(history, expected):
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-6)
        for key in accuracies:
            assert ours[key] == theirs[key]  # counts of hits agree exactly


# Every way a tensor's value reaches Python: each waits for the computation so far.
HOST_READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_losses_are_read_once_per_epoch_not_once_per_batch(trainable, name, monkeypatch):
    setup = trainable(name, batch_size=10, epochs=2)  # 20 or 100 batches an epoch
    batches = 2 * -(-len(setup.splits["train"].y) // 10)
    calls = []

    def counted(read):
        def reading(tensor, *args, **kwargs):
            calls.append(read)
            return getattr(torch.Tensor, f"_counted_{read}")(tensor, *args, **kwargs)
        return reading
    for read in HOST_READS:
        monkeypatch.setattr(torch.Tensor, f"_counted_{read}", getattr(torch.Tensor, read), raising=False)
        monkeypatch.setattr(torch.Tensor, read, counted(read))
    setup.train()

    assert 0 < len(calls) <= 10 * 2 < batches, calls


@pytest.mark.parametrize("name", ["softmax_scratch", "softmax_nn"])
def test_divergence_is_a_batch_loss_over_100_times_the_first(trainable, name, monkeypatch):
    """Past lr 10 the batch losses grow in step with the learning rate: at lr 3000 the worst is
    about 430 times the first, at lr 300 about 43 times."""
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        trainable(name, lr=3000.0).train()
    history, _ = trainable(name, lr=300.0).train()
    assert len(history) == 3
    # Controls: those two runs' worst losses lie between the factors tried here.
    for factor, lr, diverges in ((1000.0, 3000.0, False), (10.0, 300.0, True)):
        monkeypatch.setattr("regression.training.DIVERGENCE_FACTOR", factor)
        if diverges:
            with pytest.raises(TrainingDiverged):
                trainable(name, lr=lr).train()
        else:
            trainable(name, lr=lr).train()


@pytest.mark.parametrize("name, lr", [
    ("linear", 1e10),
    # Cross-entropy's gradient is bounded: the softmax models only overflow float32 for a
    # learning rate near its maximum (about 3.4e38).
    ("softmax_scratch", 1e38),
    ("softmax_nn", 1e38),
    ("mlp", 1e3),
])
def test_divergence_raises_naming_the_learning_rate(trainable, name, lr):
    setup = trainable(name, lr=lr)
    with pytest.raises(TrainingDiverged, match=rf"train\.{name}\.lr = {re.escape(repr(lr))}") as caught:
        setup.train()
    assert isinstance(caught.value, PipelineError)  # reported by a stage in one line
    assert str(caught.value).endswith("); try a smaller learning rate")  # and what to do


@pytest.mark.parametrize("name", ["softmax_scratch", "softmax_nn"])
def test_a_loss_that_explodes_but_stays_finite_is_divergence(trainable, name, monkeypatch):
    """At lr 1e6 a batch loss jumps to ~1e5 from 2.3 and nothing becomes inf or NaN."""
    with pytest.raises(TrainingDiverged, match=rf"train\.{name}\.lr = 1000000\.0") as caught:
        trainable(name, lr=1e6).train()
    assert "epoch 1" in str(caught.value)

    # Control: without the factor rule, the same run ends with every number finite.
    monkeypatch.setattr("regression.training.DIVERGENCE_FACTOR", math.inf)
    setup = trainable(name, lr=1e6)
    history, _ = setup.train()
    assert all(math.isfinite(value) for record in history for value in record.values())
    assert history[0]["train_loss"] > 100 * math.log(10)  # 100 times the untrained model's loss


def test_features_scale_uint8_images_to_unit_rows():
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[0, 0, 0], images[0, 0, 1] = 255, 0
    X = features(images)
    assert X.shape == (3, 784) and X.dtype == torch.float32
    assert X[0, 0] == 1.0 and X[0, 1] == 0.0
    # Row-major flattening: pixel (r, c) of image i is feature 28 * r + c.
    assert X[2, 28 * 5 + 17] == pytest.approx(images[2, 5, 17].item() / 255)
    assert torch.allclose(X, images.reshape(3, -1).float() / 255)
    assert images.dtype == torch.uint8  # the stored images are left as they were


def test_features_leave_float_rows_as_they_are():
    X = torch.randn(4, 2)
    assert features(X) is X


def test_as_splits_gives_tensors_over_the_arrays(tiny_fashion, linear_data):
    fashion = as_splits(tiny_fashion, MODELS["softmax_nn"])
    assert fashion["train"].X.dtype == torch.uint8 and fashion["train"].y.dtype == torch.int64
    assert np.shares_memory(fashion["train"].X.numpy(), tiny_fashion["train"][0])  # no copy of the images
    linear = as_splits(linear_data.arrays, MODELS["linear"])
    assert linear["test"].y.dtype == torch.float32 and linear["test"].y.shape == (200, 1)
    assert set(linear) == {"train", "test"}
    images, labels = tiny_fashion["test"]
    as_stored = as_splits({"test": (images, labels.astype(np.uint8))}, MODELS["softmax_nn"])  # the IDX type
    assert as_stored["test"].y.dtype == torch.int64  # as the losses take class labels


def softmax_weights(model) -> torch.Tensor:
    """A softmax model's (784, 10) weights, whichever way round it holds them."""
    matrix = max(model.parameters(), key=lambda w: w.dim()).detach()
    return matrix if matrix.shape[-1] == 10 else matrix.T


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_a_schedule_steps_both_softmax_models_alike(trainable, schedule):
    """The learning rate of each epoch reaches the hand-written step and torch's SGD alike."""
    trained = {}
    for name in ("softmax_scratch", "softmax_nn"):
        setup = trainable(name, epochs=2, schedule=schedule)
        setup.train()
        trained[name] = softmax_weights(setup.model)
    assert torch.allclose(trained["softmax_scratch"], trained["softmax_nn"], atol=1e-6)
    constant = trainable("softmax_nn", epochs=2, schedule="constant")
    constant.train()
    assert not torch.allclose(softmax_weights(constant.model), trained["softmax_nn"], atol=1e-6)  # control


def test_weights_that_overflow_in_the_last_update_of_an_epoch_are_divergence(trainable):
    """One batch per epoch: its loss is read before the update that makes the weights infinite."""
    setup = trainable("linear", lr=1e38, epochs=1, batch_size=1000)
    with pytest.raises(TrainingDiverged) as caught:
        setup.train()
    assert str(caught.value) == ("train.linear: training diverged: weights or losses became non-finite after "
                                 "epoch 1 (train.linear.lr = 1e+38); try a smaller learning rate")


def test_finite_weights_whose_test_loss_overflows_are_divergence(trainable):
    """One batch an epoch at lr 1e18: the update leaves w and b finite, of the order of 1e18, but
    the test MSE overflows float32."""
    setup = trainable("linear", lr=1e18, epochs=1, batch_size=1000)
    with pytest.raises(TrainingDiverged, match="weights or losses became non-finite after epoch 1"):
        setup.train()
    assert all(p.isfinite().all() for p in setup.model.parameters())


def test_a_loss_that_grows_epoch_by_epoch_is_judged_against_the_first_epoch_s(trainable):
    """One batch an epoch at lr 1.5: the loss grows about 4 times an epoch, never 100 times
    within one, and passes 100 times the first epoch's in the fifth."""
    setup, seen = trainable("linear", lr=1.5, epochs=10, batch_size=1000), []
    with pytest.raises(TrainingDiverged, match=r"epoch 5 reached 8373, from 33\.01 at the start"):
        setup.train(on_epoch=seen.append)
    assert len(seen) == 4 and all(math.isfinite(value) for record in seen for value in record.values())


def test_a_new_model_is_named_and_shaped_for_its_data(trainable):
    setup = trainable("softmax_nn")
    assert (setup.config.name, setup.config.n_features, setup.config.n_outputs) == ("softmax_nn", 784, 10)


def test_a_model_too_big_for_memory_is_refused_naming_its_param_and_the_memory_it_needs(trainable):
    """`hidden: 1000000000` is one line before anything is allocated, not torch's allocation error."""
    from regression import PipelineError
    from regression.training import refuse_if_too_big

    with pytest.raises(PipelineError) as caught:
        trainable("mlp", hidden=1_000_000_000)
    assert str(caught.value).startswith("train.mlp.hidden = 1000000000: a model of 795,000,000,010 parameters "
                                        "needs about 8,884.8 GiB of memory to train, and "), caught.value
    config = trainable("mlp", hidden=256).config  # 203,530 parameters: 2.4 MB to train
    refuse_if_too_big("mlp", config, available=3 * 4 * 203_530)
    with pytest.raises(PipelineError, match="use a smaller value"):
        refuse_if_too_big("mlp", config, available=3 * 4 * 203_530 - 1)
