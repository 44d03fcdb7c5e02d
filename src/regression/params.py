"""params.yaml, read as DVC reads it (YAML 1.2), each section checked by the stage that owns it.

A stage owns its section as dvc.yaml lists it (`download`, ..., `train.<model>`): before any
work it parses the file and checks that section (`load_section`), so a mistake is reported by
the stage whose key it is. A wrong type, an out-of-range value, a missing or unknown key each
give one line naming the key and the value. A section no stage reads (`trian:` beside `train:`)
would pass `dvc repro` unnoticed: `make run` first refuses it (`python -m regression.params`).
Model names are the model table's business: the train stage passes it in (no torch here).
"""

import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError,
                      field_validator)

from regression import PipelineError
from regression.data import DATASETS
from regression.fashion_mnist import FASHION_MNIST_FILES
from regression.params_messages import describe, unknown

# `download.files` must name Fashion-MNIST's four files.
FashionMnistFile = Literal[tuple(name for pair in FASHION_MNIST_FILES.values() for name in pair)]
URL_SCHEMES = ("http", "https", "file")
SCHEDULES = ("constant", "cosine", "step")  # learning-rate schedules (training.learning_rate)

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Seed = Annotated[int, Field(ge=0, lt=2 ** 64)]  # what torch.Generator.manual_seed accepts
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ParamsError(PipelineError, ValueError):
    """params.yaml is missing, unreadable or holds a value no stage can use."""


def _source_url(value: str) -> str:
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise ValueError(f"not a URL ({error})") from None
    if parts.scheme not in URL_SCHEMES or not (parts.netloc or parts.scheme == "file"):
        raise ValueError(f"not an {', '.join(URL_SCHEMES)} URL")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ExpectedFile(_Section):
    sha256: Sha256     # of the decompressed bytes, so a recompressed mirror still passes
    bytes: PositiveInt  # decompressed size: nothing larger is written


class DownloadParams(_Section):
    sources: Annotated[list[Annotated[str, AfterValidator(_source_url)]], Field(min_length=1)]
    timeout_seconds: PositiveFloat  # deadline for one file from one source
    files: dict[FashionMnistFile, ExpectedFile]

    @field_validator("files")
    @classmethod
    def _all_files(cls, files):
        missing = set(get_args(FashionMnistFile)) - set(files)
        if missing:
            raise ValueError(f"missing {', '.join(sorted(missing))}")
        return files


class PrepareParams(_Section):
    validation_size: Annotated[int, Field(ge=0)]  # training images held out for validation
    seed: Seed


class GenerateParams(_Section):
    seed: Seed
    n_train: PositiveInt
    n_test: PositiveInt
    true_w: Annotated[list[float], Field(min_length=1)]
    true_b: float
    noise_std: Annotated[float, Field(ge=0)]


class SamplesParams(_Section):
    count: PositiveInt


class TrainParams(_Section):
    dataset: Literal[tuple(DATASETS)]
    seed: Seed
    lr: PositiveFloat
    batch_size: PositiveInt
    epochs: PositiveInt
    init_std: PositiveFloat
    weight_decay: Annotated[float, Field(ge=0)] = 0.0  # L2: 0 is the lesson's plain SGD
    schedule: Literal[SCHEDULES] = "constant"  # the learning rate per epoch (training.learning_rate)


def _distinct(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError("values repeat")
    return values


def _values(kind) -> type:
    """A search list: one value or more, none twice."""
    return Annotated[list[kind], Field(min_length=1), AfterValidator(_distinct)]


class SearchSpace(_Section):
    """Values to try for each searched training param (every combination is a trial)."""
    lr: _values(PositiveFloat)
    epochs: _values(PositiveInt)
    batch_size: _values(PositiveInt)
    weight_decay: _values(Annotated[float, Field(ge=0)])
    schedule: _values(Literal[SCHEDULES])


SEARCH_KEYS = tuple(SearchSpace.model_fields)  # the TrainParams keys a sweep searches


class SweepParams(_Section):
    validation_size: PositiveInt  # training images held out (seeded) to choose on
    seed: Seed                    # of the validation split and of the sample
    sample: Annotated[int, Field(ge=0)]  # 0: every combination; n: a seeded random n of them
    grid: SearchSpace


class Params(_Section):
    download: DownloadParams
    prepare: PrepareParams
    generate: GenerateParams
    samples: SamplesParams
    train: Annotated[dict[str, TrainParams], Field(min_length=1)]
    # One per model that has a sweep stage (sweep@<model>); each searches around train.<model>.
    sweep: dict[str, SweepParams] = {}


def parse_yaml(text: str) -> Any:
    """YAML as DVC reads params.yaml: YAML 1.2 (so `1e-3` is a number), plain types."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def flat(tree, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}: params as DVC names them (`train.softmax_nn.lr`)."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}


def read_yaml(path: str | Path) -> Any:
    """A YAML file, read by `parse_yaml`; any failure is a ParamsError naming the file."""
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    try:
        return parse_yaml(path.read_text())
    except (OSError, UnicodeDecodeError, YAMLError) as error:
        raise ParamsError(f"{path}: cannot read params: {' '.join(str(error).split())}") from None


def load_params(path: str | Path = "params.yaml", models: Mapping[str, Any] | None = None) -> Params:
    """params.yaml, all checked; with `models` (name -> spec with a `dataset`), `train` keys are too."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"{path}: invalid params:\n" + describe(error, Params)) from None
    _raise_if(path, _model_problems(params.train, models) if models is not None else [])
    _raise_if(path, [f"  sweep.{name}: no train.{name} to search around (models in train: "
                     f"{', '.join(params.train)})" for name in params.sweep if name not in params.train])
    return params


def load_section(path: str | Path = "params.yaml", key: str | None = None,
                 models: Mapping[str, Any] | None = None) -> Params:
    """The params a stage owns: the file parsed, and its section `key` (`download`, ...,
    `train.<model>`; None for none) checked, in a Params holding that section alone. With
    `models`, the model of a `train.<model>` key is checked against the table."""
    path = Path(path)
    raw = _read_sections(path)
    if key is None:
        return Params.model_construct()
    section, _, model = key.partition(".")
    if section not in raw:
        _raise_if(path, [f"  {section}: missing key"])
    value, where = raw[section], (section,)
    if model:  # one model's entry of a table: `train.<model>`
        if not isinstance(value, dict) or model not in value:
            raise ParamsError(f"{key}: not in params.yaml (its models: "
                              f"{', '.join(value) if isinstance(value, dict) else 'none'})")
        value, where = value[model], (section, model)
    annotation = Params.model_fields[section].annotation
    adapter = TypeAdapter(get_args(annotation)[1] if model else annotation)
    try:
        checked = adapter.validate_python(value, strict=True)
    except ValidationError as error:
        raise ParamsError(f"{path}: invalid params:\n" + describe(error, Params, where)) from None
    if model:
        checked = {model: checked}
        _raise_if(path, _model_problems(checked, models) if models is not None else [])
    return Params.model_construct(**{section: checked})


def check_unread(path: str | Path = "params.yaml") -> None:
    """Refuse a section that no stage reads: one line each, with the section it may be a misspelling of."""
    path = Path(path)
    raw = _read_sections(path)
    _raise_if(path, [unknown([key], value, Params) for key, value in raw.items() if key not in Params.model_fields])


def _read_sections(path: Path) -> dict:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        _raise_if(path, [f"  not a mapping of sections but {type(raw).__name__}: {raw!r:.80}"])
    return raw


def _raise_if(path: Path, problems: list[str]) -> None:
    if problems:
        raise ParamsError(f"{path}: invalid params:\n" + "\n".join(problems))


def _model_problems(train: dict[str, TrainParams], models: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, p in train.items():
        if name not in models:
            problems.append(f"  train.{name}: unknown model {name!r} (known models: {', '.join(models)})")
        elif p.dataset != models[name].dataset:
            problems.append(f"  train.{name}.dataset = {p.dataset!r}: model {name} learns from "
                            f"{models[name].dataset!r}")
    return problems


if __name__ == "__main__":  # python -m regression.params [params.yaml]: what `make run` checks first
    try:
        check_unread(*sys.argv[1:])
    except ParamsError as error:
        sys.exit(f"error: {error}")
