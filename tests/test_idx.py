"""regression.idx: a dataset's IDX files read exactly via torchvision; a malformed one named in a DataError."""

import gzip
import hashlib
import re
import struct

import numpy as np
import pytest
import torch

from idx_files import (CLASSES, FASHION_MNIST_FILES, idx_images, idx_labels, write_idx_split,
                       write_tiny_fashion_mnist_files)
from regression.data import DataError
from regression.idx import read_split

TRAIN_IMAGES, TRAIN_LABELS = FASHION_MNIST_FILES["train"]


def read_fashion_split(folder, split: str):
    """A split of the Fashion-MNIST files, as `prepare@fashion-mnist` reads it."""
    return read_split(folder, *FASHION_MNIST_FILES[split], len(CLASSES))


def known_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images with the extreme values 0 and 255 at known places, and labels 0-9."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8)
    images[0, 0, 0], images[0, 0, 1] = 255, 0
    labels = torch.randint(0, 10, (n,), generator=generator)
    labels[:2] = torch.tensor([0, 9])
    return images, labels


@pytest.fixture
def idx_folder(tmp_path):
    """A folder with a 7-image train split; returns (folder, images, labels)."""
    images, labels = known_images(7)
    write_idx_split(tmp_path / "fm", "train", images, labels)
    return tmp_path / "fm", images, labels


def test_images_and_labels_are_read_back_exactly(idx_folder):
    folder, images, labels = idx_folder
    got_images, got_labels = read_fashion_split(folder, "train")
    assert isinstance(got_images, np.ndarray) and isinstance(got_labels, np.ndarray)
    assert got_images.shape == (7, 28, 28) and got_images.dtype == np.uint8
    assert got_labels.shape == (7,)
    assert np.array_equal(got_images, images.numpy())
    assert np.array_equal(got_labels, labels.numpy())


def test_labels_are_uint8_as_documented(idx_folder):
    folder, _, _ = idx_folder
    assert read_fashion_split(folder, "train")[1].dtype == np.uint8


def test_tiny_fashion_mnist_files_decompress_to_both_splits(tmp_path):
    gz_folder, folder = tmp_path / "gz", tmp_path / "fm"
    expected = write_tiny_fashion_mnist_files(gz_folder, n_train=30, n_test=12)
    folder.mkdir()
    for name, sizes in expected.items():
        raw = gzip.decompress((gz_folder / f"{name}.gz").read_bytes())
        assert sizes == {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
        (folder / name).write_bytes(raw)

    train_images, train_labels = read_fashion_split(folder, "train")
    test_images, test_labels = read_fashion_split(folder, "test")
    assert train_images.shape == (30, 28, 28) and test_images.shape == (12, 28, 28)
    # learnable_split labels example i with class i % 10 and paints its band at 255.
    assert np.array_equal(train_labels, np.arange(30) % 10)
    assert np.array_equal(test_labels, np.arange(12) % 10)
    assert train_images.max() == 255


def with_magic(magic: int):
    return lambda raw: struct.pack(">I", magic) + raw[4:]


@pytest.mark.parametrize("bad_file", [TRAIN_IMAGES, TRAIN_LABELS])
@pytest.mark.parametrize("corrupt", [
    pytest.param(lambda raw: raw[:-10], id="truncated-data"),
    pytest.param(lambda raw: raw[:6], id="truncated-header"),
    pytest.param(lambda raw: b"", id="empty"),
    pytest.param(lambda raw: b"<html>404 Not Found</html>" * 40, id="garbage"),
    pytest.param(lambda raw: raw + b"\0\0\0", id="trailing-bytes"),
    pytest.param(with_magic(0), id="zero-magic"),
    pytest.param(with_magic(0x00000C03), id="int32-type-magic"),
    pytest.param(lambda raw: gzip.compress(raw), id="still-gzipped"),
])
def test_malformed_idx_file_raises_data_error_naming_it(idx_folder, bad_file, corrupt):
    folder, _, _ = idx_folder
    path = folder / bad_file
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_fashion_split(folder, "train")


@pytest.mark.parametrize("bad_file, make", [
    (TRAIN_LABELS, lambda images, labels: idx_images(images)),
    (TRAIN_IMAGES, lambda images, labels: idx_labels(labels)),
], ids=["images-as-labels", "labels-as-images"])
def test_file_of_the_other_kind_is_rejected(idx_folder, bad_file, make):
    folder, images, labels = idx_folder
    (folder / bad_file).write_bytes(make(images, labels))
    with pytest.raises(DataError, match=re.escape(str(folder / bad_file))):
        read_fashion_split(folder, "train")


def test_images_of_any_size_are_read(idx_folder):
    folder, _, _ = idx_folder
    (folder / TRAIN_IMAGES).write_bytes(idx_images(torch.zeros(7, 14, 12, dtype=torch.uint8)))
    assert read_fashion_split(folder, "train")[0].shape == (7, 14, 12)


def test_image_and_label_counts_must_agree(idx_folder):
    folder, _, labels = idx_folder
    (folder / TRAIN_LABELS).write_bytes(idx_labels(labels[:5]))
    with pytest.raises(DataError, match=r"7 images.*5 labels"):
        read_fashion_split(folder, "train")


def test_label_beyond_the_dataset_s_classes_is_rejected(idx_folder):
    folder, _, labels = idx_folder
    labels = labels.clone()
    labels[4] = 10
    (folder / TRAIN_LABELS).write_bytes(idx_labels(labels))
    with pytest.raises(DataError, match=re.escape(str(folder / TRAIN_LABELS)) + ".*label 10 .* 10 classes"):
        read_fashion_split(folder, "train")


@pytest.mark.parametrize("missing", [TRAIN_IMAGES, TRAIN_LABELS])
def test_missing_file_raises_data_error_naming_it(idx_folder, missing):
    folder, _, _ = idx_folder
    (folder / missing).unlink()
    with pytest.raises(DataError, match=re.escape(str(folder / missing)) + ".*missing"):
        read_fashion_split(folder, "train")


def test_missing_split_raises_data_error(idx_folder):
    """The fixture writes only the train split: asking for test names the first missing file."""
    folder, _, _ = idx_folder
    with pytest.raises(DataError, match=re.escape(str(folder / FASHION_MNIST_FILES["test"][0]))):
        read_fashion_split(folder, "test")


def test_ten_class_names_in_label_order():
    assert len(CLASSES) == len(set(CLASSES)) == 10
    assert CLASSES[0] == "T-shirt/top" and CLASSES[9] == "Ankle boot"
