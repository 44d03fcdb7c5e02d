"""Stage `prepare`: Fashion-MNIST's IDX files, parsed once, into a dataset folder that trains fast.

Usage: python stages/prepare.py <IDX folder> <dataset folder>
"""

from regression import stage
from regression.data import hold_out, save_dataset
from regression.fashion_mnist import CLASSES
from regression.idx import read_split
from regression.params import ParamsError


def main(params, args):
    p = params.prepare
    train, test = read_split(args.raw, "train"), read_split(args.raw, "test")
    if p.validation_size >= len(train[0]):
        raise ParamsError(f"prepare.validation_size = {p.validation_size}: must be less than the "
                          f"{len(train[0])} training images")
    train, validation = hold_out(*train, p.validation_size, p.seed)
    splits = {"train": train, "val": validation, "test": test}
    if not p.validation_size:
        del splits["val"]
    save_dataset(args.out, splits, {"name": "fashion-mnist", "classes": list(CLASSES)})
    print(f"{args.out}: " + ", ".join(f"{len(X)} {split}" for split, (X, _) in splits.items()))


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("raw", help="folder holding the four decompressed IDX files")
    parser.add_argument("out", help="dataset folder to write")
    stage.run(main, parser, owns="prepare")
