"""A dataset's IDX files read by torchvision's reader (imported only here: only `prepare` loads it)."""

from pathlib import Path

import numpy as np
from torchvision.datasets.mnist import read_image_file, read_label_file

from regression.data import DataError


def read_idx(path: Path, reader) -> np.ndarray:
    """One IDX file through torchvision's reader; a bad file becomes a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: missing; run `dvc repro download` first")
    try:
        return reader(str(path)).numpy()
    except Exception as error:  # torchvision raises assorted types for malformed files
        raise DataError(f"{path}: not a valid IDX file ({type(error).__name__}: {error})") from None


def read_split(folder: str | Path, images_name: str, labels_name: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 images (n, rows, columns) and uint8 labels (n,) of one split, each label below `classes`."""
    images_path, labels_path = Path(folder) / images_name, Path(folder) / labels_name
    images, labels = read_idx(images_path, read_image_file), read_idx(labels_path, read_label_file)
    labels = labels.astype(np.uint8)  # torchvision gives int64; the file holds bytes
    if len(images) != len(labels):
        raise DataError(f"{images_path}: {len(images)} images but {labels_path}: {len(labels)} labels")
    if len(labels) and labels.max() >= classes:
        raise DataError(f"{labels_path}: label {labels.max()} is not one of the dataset's {classes} "
                        f"classes (0-{classes - 1}); list every class in its `classes`")
    return images, labels
