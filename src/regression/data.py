"""Dataset folders: one `.npy` array per split and role, and a `meta.json` describing them.

`prepare` (each row of params.yaml's `datasets`) and `generate` (synthetic) write a folder; the model stages and
`samples` read it. A folder holds `train_X.npy`, `train_y.npy`, `test_X.npy`, `test_y.npy`,
optionally `val_X.npy`, `val_y.npy` (a validation split), and `meta.json`: the dataset's name, its
class names or the true w and b it was made with, and a digest of the arrays. numpy only:
reading a folder costs a few milliseconds and no torch import.

Images are kept as uint8 (47 MB for the training set, not 188 MB of float32);
training scales each mini-batch to [0, 1] as it takes it.
"""

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from regression import PipelineError
from regression.files import json_bytes, write_folder_atomic
from regression.headline import TEST, TRAIN, VAL

# The kinds of data an architecture takes (`models.ModelSpec.takes`): images with class labels
# (a row of params.yaml's `datasets`: its models classify), or features with a value (the
# dataset `generate` makes: its models regress).
IMAGES, FEATURES = "images", "features"
GENERATED = "synthetic"  # the name of the one dataset of features (data/synthetic)
SPLITS = (TRAIN, VAL, TEST)  # val: held out from train, to choose settings on


def kind(dataset: str) -> str:
    """IMAGES or FEATURES: what a dataset (a folder under data/) holds."""
    return FEATURES if dataset == GENERATED else IMAGES


def classifies(dataset: str) -> bool:
    """Whether the models of a dataset classify (class labels, accuracy, class names) or regress."""
    return kind(dataset) == IMAGES


META = "meta.json"


class DataError(PipelineError, ValueError):
    """A data file is missing or not what the stage expects."""


def array_bytes(array: np.ndarray) -> bytes:
    """np.save's bytes: the same array gives the same bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def save_dataset(folder: str | Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], meta: dict) -> None:
    """Write the folder all at once (see files.write_folder_atomic).

    `meta` gets a `digest`: a hash of every array file's name and bytes, cut to the 32 hex
    digits MLflow keeps for a dataset digest, and the number of rows of each split.
    """
    files = {}
    for split, (X, y) in splits.items():
        if split not in SPLITS or len(X) != len(y):
            raise ValueError(f"bad split {split!r}: {len(X)} rows of X, {len(y)} of y")
        files[f"{split}_X.npy"], files[f"{split}_y.npy"] = array_bytes(X), array_bytes(y)
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0".encode() + hashlib.sha256(files[name]).digest())
    rows = {split: len(X) for split, (X, _) in splits.items()}
    meta = {**meta, "digest": digest.hexdigest()[:32], "rows": rows}
    files[META] = json_bytes(meta)
    write_folder_atomic(folder, files)


def read_meta(folder: str | Path) -> dict:
    path = Path(folder) / META
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run `dvc repro` to make the dataset") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable ({error})") from None
    if not (isinstance(meta, dict) and isinstance(meta.get("rows"), dict) and "train" in meta["rows"]):
        raise DataError(f"{path}: not a dataset's meta (no rows of a train split)")
    return meta


def load_split(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of one split, as saved."""
    arrays = []
    for role in ("X", "y"):
        path = Path(folder) / f"{split}_{role}.npy"
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except FileNotFoundError:
            raise DataError(f"{path}: missing; run `dvc repro` to make the dataset") from None
        except (OSError, ValueError, EOFError) as error:
            raise DataError(f"{path}: not a valid .npy file ({error or 'empty'})") from None
    X, y = arrays
    if len(X) != len(y):
        raise DataError(f"{folder}: {split} has {len(X)} rows of X but {len(y)} of y")
    return X, y


def load_dataset(folder: str | Path) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(meta, {split: (X, y)}) for every split the folder holds."""
    meta = read_meta(folder)
    return meta, {split: load_split(folder, split) for split in SPLITS if split in meta["rows"]}


def hold_out(X: np.ndarray, y: np.ndarray, size: int, seed: int):
    """Split off `size` rows chosen at random (seeded) as validation: ((X, y) train, (X, y) validation).

    Both parts keep the original order of their rows, so `size=0` gives back the data as it was.
    """
    if not 0 <= size < len(X):
        raise ValueError(f"cannot hold out {size} of {len(X)} rows")
    chosen = np.zeros(len(X), dtype=bool)
    chosen[np.random.default_rng(seed).permutation(len(X))[:size]] = True
    return (X[~chosen], y[~chosen]), (X[chosen], y[chosen])
