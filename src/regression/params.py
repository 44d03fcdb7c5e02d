"""params.yaml, checked in full before any stage does any work.

Every stage calls `load_params()` first, so a wrong type, a non-positive rate, an unknown
model or a missing key stops the pipeline with one message naming the key and the value,
before any output is written or any MLflow run is opened.
"""

from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from regression import PipelineError

# Which dataset each model learns from; `train.<model>.dataset` must agree (dvc.yaml reads it).
MODEL_DATASETS = {
    "linear": "synthetic",
    "softmax_scratch": "fashion-mnist",
    "softmax_nn": "fashion-mnist",
}

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# The four Fashion-MNIST IDX files, in this order: train images, train labels, test images, test labels.
FashionMnistFile = Literal["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


class ParamsError(PipelineError, ValueError):
    """params.yaml is missing, unreadable or holds a value no stage can use."""


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class DownloadParams(_Section):
    sources: Annotated[list[str], Field(min_length=1)]
    timeout_seconds: PositiveFloat
    files: dict[FashionMnistFile, Sha256]

    @model_validator(mode="after")
    def _all_files(self):
        missing = set(get_args(FashionMnistFile)) - set(self.files)
        if missing:
            raise ValueError(f"download.files: missing {', '.join(sorted(missing))}")
        return self


class GenerateParams(_Section):
    seed: Annotated[int, Field(ge=0)]
    n_train: PositiveInt
    n_test: PositiveInt
    true_w: Annotated[list[float], Field(min_length=1)]
    true_b: float
    noise_std: Annotated[float, Field(ge=0)]


class SamplesParams(_Section):
    count: PositiveInt


class TrainParams(_Section):
    dataset: Literal["synthetic", "fashion-mnist"]
    seed: Annotated[int, Field(ge=0)]
    lr: PositiveFloat
    batch_size: PositiveInt
    epochs: PositiveInt
    init_std: PositiveFloat


class Params(_Section):
    download: DownloadParams
    generate: GenerateParams
    samples: SamplesParams
    train: Annotated[dict[str, TrainParams], Field(min_length=1)]

    @model_validator(mode="after")
    def _known_models(self):
        for name, model in self.train.items():
            if name not in MODEL_DATASETS:
                known = ", ".join(MODEL_DATASETS)
                raise ValueError(f"train.{name}: unknown model {name!r} (known models: {known})")
            if model.dataset != MODEL_DATASETS[name]:
                raise ValueError(
                    f"train.{name}.dataset: model {name} learns from "
                    f"{MODEL_DATASETS[name]!r}, got {model.dataset!r}"
                )
        return self


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ParamsError(f"{path}: cannot read params: {error}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"{path}: invalid params:\n" + _describe(error)) from None


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            lines.append(f"  {key}: missing key")
        elif key:
            lines.append(f"  {key} = {problem['input']!r}: {message}")
        else:
            lines.append(f"  {message}")
    return "\n".join(lines)
