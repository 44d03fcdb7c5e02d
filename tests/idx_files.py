"""Tiny IDX image datasets in the real format (raw or .gz), for tests: Fashion-MNIST look-alikes by default."""

import gzip
import hashlib
import struct
from pathlib import Path

import torch

from regression.params import read_yaml

# Fashion-MNIST's row of the project's params.yaml: its IDX files by split (images, labels), its classes.
FASHION_MNIST = read_yaml(Path(__file__).resolve().parents[1] / "params.yaml")["datasets"]["fashion-mnist"]
FASHION_MNIST_FILES, CLASSES = FASHION_MNIST["splits"], tuple(FASHION_MNIST["classes"])

IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801  # unsigned bytes; 3 and 1 dimensions


def idx_images(images: torch.Tensor) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", IMAGE_MAGIC, n, rows, cols) + images.to(torch.uint8).numpy().tobytes()


def idx_labels(labels: torch.Tensor) -> bytes:
    return struct.pack(">II", LABEL_MAGIC, len(labels)) + labels.to(torch.uint8).numpy().tobytes()


def learnable_split(n: int, generator: torch.Generator, classes: int = 10, side: int = 28
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (side x side) whose class shows as a bright band at a class-specific row, plus
    noise; example i is of class i % classes (int64 labels)."""
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, side, side), generator=generator, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        images[i, 2 + 2 * label: 4 + 2 * label, :] = 255
    return images, labels


def write_idx_split(folder: Path, split: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """The two raw (decompressed) IDX files of "train" or "test", as the download stage leaves them."""
    folder.mkdir(parents=True, exist_ok=True)
    images_name, labels_name = FASHION_MNIST_FILES[split]
    (folder / images_name).write_bytes(idx_images(images))
    (folder / labels_name).write_bytes(idx_labels(labels))


def write_tiny_fashion_mnist_files(folder: Path, n_train: int = 500, n_test: int = 100, seed: int = 0,
                                   classes: int = 10, side: int = 28, names: dict = FASHION_MNIST_FILES
                                   ) -> dict[str, dict]:
    """Write the four `.gz` IDX files (`names`: {split: [images, labels]}); return {name: {"sha256",
    "bytes"}} of the decompressed bytes, the shape of a params.yaml dataset row's `files`."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = learnable_split(n, generator, classes, side)
        for name, raw in zip(names[split], (idx_images(images), idx_labels(labels))):
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw, mtime=0))
            files[name] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    return files


def write_tiny_fashion_mnist(folder: Path, n_train: int = 500, n_test: int = 100,
                             seed: int = 0) -> dict[str, str]:
    """Write the four `.gz` IDX files; return {name: sha256 of the decompressed bytes}."""
    files = write_tiny_fashion_mnist_files(folder, n_train, n_test, seed)
    return {name: expected["sha256"] for name, expected in files.items()}
