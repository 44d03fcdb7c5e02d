"""Stage `generate`: the synthetic linear data y = Xw + b + noise, as a dataset folder.

Usage: python stages/generate.py <dataset folder>
"""

import torch

from regression import stage
from regression.data import save_dataset


def synthetic_data(w: torch.Tensor, b: float, noise_std: float, n: int, generator: torch.Generator):
    """The lesson's data: X ~ N(0, 1), y = Xw + b + N(0, noise_std), y as a column."""
    X = torch.normal(0.0, 1.0, (n, len(w)), generator=generator)
    y = X @ w + b + torch.normal(0.0, noise_std, (n,), generator=generator)
    return X.numpy(), y.reshape(-1, 1).numpy()


def main(params, args):
    p = params.generate
    generator = torch.Generator().manual_seed(p.seed)
    w = torch.tensor(p.true_w, dtype=torch.float32)
    splits = {"train": synthetic_data(w, p.true_b, p.noise_std, p.n_train, generator),
              "test": synthetic_data(w, p.true_b, p.noise_std, p.n_test, generator)}
    save_dataset(args.out, splits, {"name": "synthetic", "true_w": p.true_w, "true_b": p.true_b})
    print(f"{args.out}: {p.n_train} train and {p.n_test} test examples")


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("out", help="dataset folder to write")
    stage.run(main, parser)
