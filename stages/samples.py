"""Stage `samples`: a PNG of the first training images of a dataset folder, with their class names.

Usage: python stages/samples.py <dataset folder> <PNG>
"""

from regression import stage
from regression.data import load_split, read_meta
from regression.figures import png_bytes, sample_grid
from regression.files import write_bytes_atomic


def main(params, args):
    classes = read_meta(args.data)["classes"]
    images, labels = load_split(args.data, "train")
    count = params.samples.count
    write_bytes_atomic(args.out, png_bytes(sample_grid(images[:count], labels[:count], classes)))
    print(f"{args.out}: {min(count, len(images))} images")


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("data", help="dataset folder (as `prepare` writes it)")
    parser.add_argument("out", help="PNG to write")
    stage.run(main, parser, owns="samples")
