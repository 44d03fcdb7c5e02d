"""Stage `generate`: synthetic linear data y = Xw + b + noise into data/synthetic."""

import torch

from regression import stage
from regression.data import generate_linear, save_linear

OUT = "data/synthetic"


def main(params, argv):
    p = params.generate
    generator = torch.Generator().manual_seed(p.seed)
    train = generate_linear(p.n_train, p.true_w, p.true_b, p.noise_std, generator)
    test = generate_linear(p.n_test, p.true_w, p.true_b, p.noise_std, generator)
    save_linear(OUT, train, test, p.true_w, p.true_b)
    print(f"{OUT}: {p.n_train} train and {p.n_test} test examples")


if __name__ == "__main__":
    stage.run(main)
