"""stages/generate.py: the synthetic data is the lesson's y = Xw + b + noise, seeded."""

import numpy as np

from conftest import NOISE_STD, TRUE_B, TRUE_W, stage_module

synthetic_data = stage_module("generate").synthetic_data
W = np.asarray(TRUE_W, dtype=np.float32)


def draw(seed: int, n: int = 5000):
    return synthetic_data(W, TRUE_B, NOISE_STD, n, np.random.default_rng(seed))


def test_rows_follow_the_linear_model_with_the_noise_asked_for():
    X, y = draw(0)
    assert X.shape == (5000, 2) and y.shape == (5000, 1)
    assert X.dtype == y.dtype == np.float32
    assert abs(X.mean()) < 0.05 and abs(X.std() - 1) < 0.05
    residual = y[:, 0] - (X @ W + TRUE_B)
    assert abs(residual.std() - NOISE_STD) < 0.001 and abs(residual.mean()) < 0.001


def test_the_seed_decides_the_data():
    assert all(np.array_equal(a, b) for a, b in zip(draw(0), draw(0)))
    assert not np.array_equal(draw(0)[0], draw(1)[0])
