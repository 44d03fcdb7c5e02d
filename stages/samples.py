"""Stage `samples`: a PNG of the first training images with their class names."""

from regression import stage
from regression.data import load_fashion_mnist_images
from regression.figures import png_bytes, sample_grid
from regression.files import write_bytes_atomic

DATA = "data/fashion-mnist"
OUT = "metrics/fashion-mnist-samples.png"


def main(params, argv):
    images, labels = load_fashion_mnist_images(DATA, "train")
    count = params.samples.count
    write_bytes_atomic(OUT, png_bytes(sample_grid(images[:count], labels[:count])))
    print(f"{OUT}: {min(count, len(images))} images")


if __name__ == "__main__":
    stage.run(main)
