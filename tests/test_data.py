"""regression.data: dataset folders (.npy arrays, meta.json) round trip; their digest, bad files, hold_out."""

import io
import json
import re

import numpy as np
import pytest

from regression.data import (
    DataError,
    array_bytes,
    hold_out,
    load_dataset,
    load_split,
    read_meta,
    save_dataset,
)


@pytest.fixture(params=["tiny_fashion", "linear_data"])
def dataset(request):
    """(splits, meta) of a dataset as `prepare` (uint8 images, int64 labels) or `generate`
    (float32 features and targets) saves it."""
    if request.param == "tiny_fashion":
        return request.getfixturevalue("tiny_fashion"), {"name": "fashion-mnist", "classes": ["a", "b"]}
    data = request.getfixturevalue("linear_data")
    return data.arrays, data.meta


@pytest.fixture
def small():
    """Three small splits: {split: (X, y)}."""
    rng = np.random.default_rng(0)
    return {split: (rng.integers(0, 256, (n, 4, 4), dtype=np.uint8), rng.integers(0, 10, n))
            for split, n in (("train", 6), ("val", 3), ("test", 4))}


def digest_of(tmp_path, splits, name="ds") -> str:
    save_dataset(tmp_path / name, splits, {"name": "t"})
    return read_meta(tmp_path / name)["digest"]


def test_dataset_folder_round_trips_exactly(tmp_path, dataset):
    splits, meta = dataset
    folder = tmp_path / "ds"
    save_dataset(folder, splits, meta)

    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["meta.json"] + [f"{split}_{role}.npy" for split in splits for role in "Xy"])
    got_meta, got = load_dataset(folder)
    assert got.keys() == splits.keys()
    for split, (X, y) in splits.items():
        for saved, loaded in ((X, got[split][0]), (y, got[split][1])):
            assert loaded.dtype == saved.dtype and loaded.shape == saved.shape
            assert array_bytes(loaded) == array_bytes(saved)
        assert (folder / f"{split}_X.npy").read_bytes() == array_bytes(X)
    assert {k: v for k, v in got_meta.items() if k not in ("digest", "rows")} == meta
    assert re.fullmatch(r"[0-9a-f]{32}", got_meta["digest"])
    assert got_meta["rows"] == {split: len(X) for split, (X, _) in splits.items()}


def test_load_split_reads_one_split(tmp_path, small):
    save_dataset(tmp_path / "ds", small, {"name": "t"})
    X, y = load_split(tmp_path / "ds", "val")
    assert np.array_equal(X, small["val"][0]) and np.array_equal(y, small["val"][1])


def test_same_arrays_give_identical_files(tmp_path, small):
    save_dataset(tmp_path / "one", small, {"name": "t"})
    save_dataset(tmp_path / "two", {split: (X.copy(), y.copy()) for split, (X, y) in small.items()},
                 {"name": "t"})
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_saving_again_replaces_the_folder(tmp_path, small):
    folder = tmp_path / "ds"
    save_dataset(folder, small, {"name": "t"})
    save_dataset(folder, {"train": small["train"], "test": small["test"]}, {"name": "t"})
    assert not (folder / "val_X.npy").exists()
    assert load_dataset(folder)[1].keys() == {"train", "test"}
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temporary folder left beside it


def test_digest_changes_with_one_byte_of_one_array(tmp_path, small):
    X, y = small["test"]
    changed = X.copy()
    changed[2, 1, 3] ^= 1
    assert digest_of(tmp_path, small, "one") != digest_of(tmp_path, small | {"test": (changed, y)}, "two")


def test_digest_changes_when_arrays_move_to_another_split(tmp_path, small):
    swapped = small | {"val": small["test"], "test": small["val"]}
    assert digest_of(tmp_path, small, "before") != digest_of(tmp_path, swapped, "swapped")


def test_digest_changes_when_a_split_is_renamed(tmp_path, small):
    as_validation = {"train": small["train"], "val": small["val"]}
    as_test = {"train": small["train"], "test": small["val"]}
    assert digest_of(tmp_path, as_validation, "before") != digest_of(tmp_path, as_test, "renamed")


def test_digest_does_not_depend_on_the_order_splits_are_given_in(tmp_path, small):
    reordered = dict(reversed(small.items()))
    assert digest_of(tmp_path, small, "one") == digest_of(tmp_path, reordered, "two")


def test_digest_depends_on_the_dtype(tmp_path, small):
    X, y = small["train"]
    as_int32 = small | {"train": (X, y.astype(np.int32))}
    assert digest_of(tmp_path, small, "one") != digest_of(tmp_path, as_int32, "two")


@pytest.mark.parametrize("splits", [
    {"train": (np.zeros((3, 2)), np.zeros(2))},
    {"training": (np.zeros((3, 2)), np.zeros(3))},
], ids=["row-mismatch", "unknown-split"])
def test_save_dataset_rejects_a_bad_split(tmp_path, splits):
    with pytest.raises(ValueError, match="bad split"):
        save_dataset(tmp_path / "ds", splits, {"name": "t"})
    assert not (tmp_path / "ds").exists()


@pytest.fixture
def saved(tmp_path, small):
    save_dataset(tmp_path / "ds", small, {"name": "t"})
    return tmp_path / "ds"


@pytest.mark.parametrize("name", ["train_X.npy", "test_y.npy"])
def test_missing_array_raises_data_error_naming_it(saved, name):
    (saved / name).unlink()
    with pytest.raises(DataError, match=re.escape(str(saved / name)) + ".*missing"):
        load_dataset(saved)


def pickled_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("corrupt", [
    pytest.param(lambda raw: raw[:-5], id="truncated-data"),
    pytest.param(lambda raw: raw[:20], id="truncated-header"),
    pytest.param(lambda raw: b"<html>404 Not Found</html>" * 10, id="garbage"),
    pytest.param(lambda raw: pickled_npy(np.array(["x", None], dtype=object)), id="pickled-objects"),
    pytest.param(lambda raw: b"", id="empty"),
])
def test_corrupt_array_raises_data_error_naming_it(saved, corrupt):
    path = saved / "train_y.npy"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError, match=re.escape(str(path))):
        load_dataset(saved)


def test_rows_of_x_and_y_must_agree(saved, small):
    np.save(saved / "train_y.npy", small["train"][1][:-1])
    with pytest.raises(DataError, match=r"train has 6 rows of X but 5 of y"):
        load_split(saved, "train")


def test_missing_meta_raises_data_error_naming_it(saved):
    (saved / "meta.json").unlink()
    with pytest.raises(DataError, match=re.escape(str(saved / "meta.json")) + ".*missing"):
        load_dataset(saved)


@pytest.mark.parametrize("content", [b"", b'{"name": "t",', b"\xff\xfe\x00"],
                         ids=["empty", "truncated", "binary"])
def test_corrupt_meta_raises_data_error_naming_it(saved, content):
    (saved / "meta.json").write_bytes(content)
    with pytest.raises(DataError, match=re.escape(str(saved / "meta.json"))):
        load_dataset(saved)


@pytest.mark.parametrize("content", [[], {"name": "t"}], ids=["not-an-object", "no-rows"])
def test_meta_that_is_not_a_datasets_raises_data_error(saved, content):
    (saved / "meta.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match=re.escape(str(saved / "meta.json"))):
        load_dataset(saved)


def numbered(n: int):
    """X = row numbers, y = 10 * row numbers: where each row went, and that X and y moved together."""
    return np.arange(n), 10 * np.arange(n)


def test_hold_out_is_disjoint_complete_and_keeps_order():
    X, y = numbered(50)
    (X_train, y_train), (X_validation, y_validation) = hold_out(X, y, 12, seed=3)
    assert len(X_validation) == 12 and len(X_train) == 38
    assert np.array_equal(np.sort(np.concatenate([X_train, X_validation])), X)
    assert np.array_equal(y_train, 10 * X_train) and np.array_equal(y_validation, 10 * X_validation)
    assert (np.diff(X_train) > 0).all() and (np.diff(X_validation) > 0).all()
    assert not np.array_equal(X_validation, X[:12])  # chosen at random, not the first rows


def test_hold_out_is_seeded():
    X, y = numbered(50)
    first, again, other = (hold_out(X, y, 12, seed)[1][0] for seed in (3, 3, 4))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_hold_out_of_nothing_gives_the_data_back():
    X, y = numbered(7)
    (X_train, y_train), (X_validation, y_validation) = hold_out(X, y, 0, seed=0)
    assert np.array_equal(X_train, X) and np.array_equal(y_train, y)
    assert len(X_validation) == 0 and len(y_validation) == 0


def test_hold_out_works_on_images():
    images, labels = np.arange(5 * 28 * 28, dtype=np.int64).reshape(5, 28, 28), np.arange(5)
    (train_images, train_labels), (validation_images, _) = hold_out(images, labels, 2, seed=0)
    assert train_images.shape == (3, 28, 28) and validation_images.shape == (2, 28, 28)
    assert np.array_equal(train_images, images[train_labels])


@pytest.mark.parametrize("size", [7, 8, -1])
def test_hold_out_of_too_many_rows_raises(size):
    with pytest.raises(ValueError, match=f"cannot hold out {size} of 7 rows"):
        hold_out(*numbered(7), size, seed=0)
