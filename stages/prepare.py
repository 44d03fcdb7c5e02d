"""Stage `prepare@<dataset>`: a dataset's IDX files, parsed once, into a dataset folder that trains fast.

Usage: python stages/prepare.py <dataset> <IDX folder> <dataset folder>
"""

from regression import stage
from regression.data import hold_out, save_dataset
from regression.headline import TEST, TRAIN, VAL
from regression.idx import read_split
from regression.params import ParamsError


def main(params, args):
    row = params.datasets[args.dataset]
    train, test = (read_split(args.raw, *getattr(row.splits, split), len(row.classes)) for split in (TRAIN, TEST))
    if row.validation_size >= len(train[0]):
        raise ParamsError(f"datasets.{args.dataset}.validation_size = {row.validation_size}: must be less "
                          f"than the {len(train[0])} training images")
    train, validation = hold_out(*train, row.validation_size, row.seed)
    splits = {TRAIN: train, VAL: validation, TEST: test}
    if not row.validation_size:
        del splits[VAL]
    save_dataset(args.out, splits, {"name": args.dataset, "classes": list(row.classes)})
    print(f"{args.out}: " + ", ".join(f"{len(X)} {split}" for split, (X, _) in splits.items()))


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("dataset", help="a row of `datasets` in params.yaml")
    parser.add_argument("raw", help="folder holding its decompressed IDX files")
    parser.add_argument("out", help="dataset folder to write")
    stage.run(main, parser, owns=lambda args: f"datasets.{args.dataset}")
