"""The two datasets, held whole in memory as tensors.

Fashion-MNIST comes from the IDX files the download stage writes (parsed by torchvision's
reader); the synthetic linear data is generated here from params and saved as tensors.
Training slices mini-batches out of these tensors instead of running a per-sample
transform, which is what makes an epoch take a fraction of a second.
"""

import hashlib
from pathlib import Path
from typing import NamedTuple, get_args

import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

from regression import PipelineError
from regression.files import save_tensors, sha256_file
from regression.params import FashionMnistFile

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = get_args(FashionMnistFile)
FASHION_MNIST_FILES = {"train": (TRAIN_IMAGES, TRAIN_LABELS), "test": (TEST_IMAGES, TEST_LABELS)}
SYNTHETIC_FILE = "linear.pt"


class Split(NamedTuple):
    X: torch.Tensor  # float32, one row per example
    y: torch.Tensor  # int64 class labels, or float32 (n, 1) targets


class DataError(PipelineError, ValueError):
    """A data file is missing or not what the stage expects."""


def read_idx(path: Path, reader) -> torch.Tensor:
    """One IDX file through torchvision's reader; a bad file becomes a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: missing; run `dvc repro download` first")
    try:
        return reader(str(path))
    except Exception as error:  # torchvision raises assorted types for malformed files
        raise DataError(f"{path}: not a valid IDX file ({type(error).__name__}: {error})") from None


def load_fashion_mnist_images(folder: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw uint8 images (n, 28, 28) and int64 labels (n,) of one split."""
    images_name, labels_name = FASHION_MNIST_FILES[split]
    images_path, labels_path = Path(folder) / images_name, Path(folder) / labels_name
    images, labels = read_idx(images_path, read_image_file), read_idx(labels_path, read_label_file)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {tuple(images.shape[1:])}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(f"{images_path}: {len(images)} images but {labels_path}: {len(labels)} labels")
    return images, labels


def load_fashion_mnist(folder: str | Path, split: str) -> Split:
    """Images scaled to [0, 1] and flattened to 784 features, as ToTensor would give."""
    images, labels = load_fashion_mnist_images(folder, split)
    return Split(images.reshape(len(images), -1).to(torch.float32).div_(255.0), labels.long())


def generate_linear(n: int, true_w: list[float], true_b: float, noise_std: float,
                    generator: torch.Generator) -> Split:
    """y = Xw + b + noise, X ~ N(0, 1)."""
    w = torch.tensor(true_w, dtype=torch.float32)
    X = torch.normal(0.0, 1.0, (n, len(w)), generator=generator)
    y = X @ w + true_b + torch.normal(0.0, noise_std, (n,), generator=generator)
    return Split(X, y.reshape(-1, 1))


def save_linear(folder: str | Path, train: Split, test: Split, true_w, true_b) -> None:
    save_tensors(Path(folder) / SYNTHETIC_FILE, {
        "X_train": train.X, "y_train": train.y, "X_test": test.X, "y_test": test.y,
        "true_w": torch.tensor(true_w, dtype=torch.float32),
        "true_b": torch.tensor(true_b, dtype=torch.float32),
    })


def load_linear(folder: str | Path) -> tuple[Split, Split, dict]:
    """Train and test splits, and the true w and b the data was made from."""
    path = Path(folder) / SYNTHETIC_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing; run `dvc repro generate` first")
    saved = torch.load(path, weights_only=True)
    truth = {"w": saved["true_w"].tolist(), "b": saved["true_b"].item()}
    return Split(saved["X_train"], saved["y_train"]), Split(saved["X_test"], saved["y_test"]), truth


def load_dataset(name: str, folder: str | Path) -> tuple[Split, Split]:
    """Train and test splits of a dataset named in `train.<model>.dataset`."""
    if name == "synthetic":
        train, test, _ = load_linear(folder)
        return train, test
    return load_fashion_mnist(folder, "train"), load_fashion_mnist(folder, "test")


def folder_digest(folder: str | Path) -> str:
    """A content hash of a data folder: its file names and their sha256, hashed together.

    Cut to 32 hex digits, the length MLflow keeps for a dataset digest.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()[:32]
