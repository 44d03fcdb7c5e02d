"""regression.data: IDX parsing, the synthetic linear data, and the data-folder digest."""

import gzip
import re
import shutil

import pytest
import torch

from idx_files import idx_images, idx_labels, write_tiny_fashion_mnist
from regression.data import (
    FASHION_MNIST_FILES,
    DataError,
    folder_digest,
    generate_linear,
    load_dataset,
    load_fashion_mnist,
    load_fashion_mnist_images,
    load_linear,
    save_linear,
)

TRAIN_IMAGES, TRAIN_LABELS = FASHION_MNIST_FILES["train"]


def known_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images with the extreme values 0 and 255 at known places, and labels."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8)
    images[0, 0, 0], images[0, 0, 1] = 255, 0
    labels = torch.randint(0, 10, (n,), generator=generator)
    return images, labels


def write_split(folder, split, images, labels):
    """Raw (uncompressed) IDX files of one split, as the download stage leaves them."""
    folder.mkdir(parents=True, exist_ok=True)
    images_name, labels_name = FASHION_MNIST_FILES[split]
    (folder / images_name).write_bytes(idx_images(images))
    (folder / labels_name).write_bytes(idx_labels(labels))


@pytest.fixture
def idx_folder(tmp_path):
    """A folder with a 7-image train split; returns (folder, images, labels)."""
    images, labels = known_images(7)
    write_split(tmp_path / "fm", "train", images, labels)
    return tmp_path / "fm", images, labels


def test_raw_images_and_labels_are_read_back_exactly(idx_folder):
    folder, images, labels = idx_folder
    got_images, got_labels = load_fashion_mnist_images(folder, "train")
    assert got_images.shape == (7, 28, 28) and got_images.dtype == torch.uint8
    assert got_labels.shape == (7,) and got_labels.dtype == torch.int64
    assert torch.equal(got_images, images)
    assert torch.equal(got_labels, labels)


def test_images_are_flattened_and_scaled_to_unit_range(idx_folder):
    folder, images, labels = idx_folder
    split = load_fashion_mnist(folder, "train")
    assert split.X.shape == (7, 784) and split.X.dtype == torch.float32
    assert split.y.dtype == torch.int64
    assert torch.equal(split.y, labels)
    assert split.X.min() >= 0.0 and split.X.max() <= 1.0
    assert split.X[0, 0] == 1.0  # pixel value 255
    assert split.X[0, 1] == 0.0  # pixel value 0
    # Row-major flattening: pixel (r, c) of image i is feature 28 * r + c.
    assert split.X[3, 28 * 5 + 17] == pytest.approx(images[3, 5, 17].item() / 255)
    assert torch.allclose(split.X, images.reshape(7, -1).float() / 255)


def test_decompressed_tiny_fashion_mnist_loads_both_splits(tmp_path):
    gz_folder, folder = tmp_path / "gz", tmp_path / "fm"
    write_tiny_fashion_mnist(gz_folder, n_train=30, n_test=12)
    folder.mkdir()
    for path in gz_folder.glob("*.gz"):
        (folder / path.stem).write_bytes(gzip.decompress(path.read_bytes()))

    train, test = load_dataset("fashion-mnist", folder)
    assert train.X.shape == (30, 784) and test.X.shape == (12, 784)
    # learnable_split labels example i with class i % 10 and paints its band at 255.
    assert torch.equal(train.y, torch.arange(30) % 10)
    assert torch.equal(test.y, torch.arange(12) % 10)
    assert train.X.max() == 1.0


@pytest.mark.parametrize("bad_file", [TRAIN_IMAGES, TRAIN_LABELS])
@pytest.mark.parametrize("corrupt", [
    pytest.param(lambda raw: raw[:-10], id="truncated-data"),
    pytest.param(lambda raw: raw[:6], id="truncated-header"),
    pytest.param(lambda raw: b"", id="empty"),
    pytest.param(lambda raw: b"<html>404 Not Found</html>" * 40, id="garbage"),
    pytest.param(lambda raw: raw + b"\0\0\0", id="trailing-bytes"),
])
def test_invalid_idx_file_raises_data_error_naming_it(idx_folder, bad_file, corrupt):
    folder, _, _ = idx_folder
    path = folder / bad_file
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError, match=re.escape(str(path))):
        load_fashion_mnist(folder, "train")


def test_images_file_in_place_of_labels_is_rejected(idx_folder):
    folder, images, _ = idx_folder
    (folder / TRAIN_LABELS).write_bytes(idx_images(images))
    with pytest.raises(DataError, match=re.escape(str(folder / TRAIN_LABELS))):
        load_fashion_mnist_images(folder, "train")


def test_image_and_label_counts_must_agree(idx_folder):
    folder, _, labels = idx_folder
    (folder / TRAIN_LABELS).write_bytes(idx_labels(labels[:5]))
    with pytest.raises(DataError, match=r"7 images.*5 labels"):
        load_fashion_mnist(folder, "train")


@pytest.mark.parametrize("missing", [TRAIN_IMAGES, TRAIN_LABELS])
def test_missing_file_raises_data_error_naming_it(idx_folder, missing):
    folder, _, _ = idx_folder
    (folder / missing).unlink()
    with pytest.raises(DataError, match=re.escape(str(folder / missing)) + ".*missing"):
        load_fashion_mnist(folder, "train")


def test_missing_split_raises_data_error(idx_folder):
    """The fixture writes only the train split: asking for test must not crash elsewhere."""
    folder, _, _ = idx_folder
    with pytest.raises(DataError, match=re.escape(str(folder / FASHION_MNIST_FILES["test"][0]))):
        load_fashion_mnist(folder, "test")


def linear_data(seed: int, n: int = 50):
    return generate_linear(n, [2.0, -3.4], 4.2, 0.01, torch.Generator().manual_seed(seed))


def test_generate_linear_shapes_and_relation():
    split = linear_data(0)
    assert split.X.shape == (50, 2) and split.X.dtype == torch.float32
    assert split.y.shape == (50, 1) and split.y.dtype == torch.float32
    noise = split.y - (split.X @ torch.tensor([[2.0], [-3.4]]) + 4.2)
    assert noise.abs().max() < 0.06  # noise_std 0.01: 6 sigma
    assert noise.std() > 0.001       # but the noise is there


def test_generate_linear_is_deterministic_per_seed():
    first, again, other = linear_data(0), linear_data(0), linear_data(1)
    assert torch.equal(first.X, again.X) and torch.equal(first.y, again.y)
    assert not torch.equal(first.X, other.X)
    assert not torch.equal(first.y, other.y)


def test_save_and_load_linear_round_trip(tmp_path):
    generator = torch.Generator().manual_seed(3)
    train = generate_linear(20, [2.0, -3.4], 4.2, 0.01, generator)
    test = generate_linear(10, [2.0, -3.4], 4.2, 0.01, generator)
    save_linear(tmp_path / "synthetic", train, test, [2.0, -3.4], 4.2)

    got_train, got_test, truth = load_linear(tmp_path / "synthetic")
    for got, expected in ((got_train, train), (got_test, test)):
        assert torch.equal(got.X, expected.X) and torch.equal(got.y, expected.y)
    assert truth["w"] == pytest.approx([2.0, -3.4])
    assert truth["b"] == pytest.approx(4.2)
    assert torch.equal(load_dataset("synthetic", tmp_path / "synthetic")[1].y, test.y)


def test_load_linear_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "linear.pt"))):
        load_linear(tmp_path)


@pytest.fixture
def digest_folder(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "sub" / "b.txt").write_text("hello")
    return folder


def test_folder_digest_is_32_hex_digits_and_content_based(digest_folder, tmp_path):
    digest = folder_digest(digest_folder)
    assert re.fullmatch(r"[0-9a-f]{32}", digest)
    assert folder_digest(digest_folder) == digest
    # Where the folder lives does not matter, only what it holds.
    assert folder_digest(shutil.copytree(digest_folder, tmp_path / "copy")) == digest


def test_folder_digest_changes_with_one_byte(digest_folder):
    before = folder_digest(digest_folder)
    data = bytearray((digest_folder / "a.bin").read_bytes())
    data[500] ^= 1
    (digest_folder / "a.bin").write_bytes(bytes(data))
    assert folder_digest(digest_folder) != before


@pytest.mark.parametrize("new_path", ["sub/c.txt", "b.txt"], ids=["renamed", "moved-up"])
def test_folder_digest_changes_when_a_file_moves(digest_folder, new_path):
    before = folder_digest(digest_folder)
    (digest_folder / "sub" / "b.txt").rename(digest_folder / new_path)
    assert folder_digest(digest_folder) != before
