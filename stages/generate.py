"""Stage `generate`: the synthetic linear data y = Xw + b + noise, as a dataset folder.

Usage: python stages/generate.py <dataset folder>
"""

import numpy as np

from regression import stage
from regression.data import save_dataset


def synthetic_data(w: np.ndarray, b: float, noise_std: float, n: int, rng: np.random.Generator):
    """The lesson's data: X ~ N(0, 1), y = Xw + b + N(0, noise_std), as float32 with y a column.

    numpy draws it (seeded), so this stage needs no torch. Xw is summed column by column, each
    product and sum rounded on its own: a BLAS product (`X @ w`) would round as the CPU's kernel
    does (fused multiply-adds on some CPUs, not on others), and the bytes would differ by machine.
    """
    X = rng.standard_normal((n, len(w)), dtype=np.float32)
    y = X[:, 0] * w[0]
    for j in range(1, len(w)):
        y = y + X[:, j] * w[j]
    y = y + np.float32(b) + rng.normal(0.0, noise_std, n).astype(np.float32)
    return X, y.reshape(-1, 1)


def main(params, args):
    p = params.generate
    rng = np.random.default_rng(p.seed)
    w = np.asarray(p.true_w, dtype=np.float32)
    splits = {"train": synthetic_data(w, p.true_b, p.noise_std, p.n_train, rng),
              "test": synthetic_data(w, p.true_b, p.noise_std, p.n_test, rng)}
    save_dataset(args.out, splits, {"name": "synthetic", "true_w": p.true_w, "true_b": p.true_b})
    print(f"{args.out}: {p.n_train} train and {p.n_test} test examples")


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("out", help="dataset folder to write")
    stage.run(main, parser, owns="generate")
