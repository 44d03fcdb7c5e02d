"""params.yaml, read as DVC reads it (YAML 1.2) and checked in full before a stage does any work.

A wrong type, an out-of-range value, a missing or unknown key or section each give one line
naming the key and the value, before any output is written or any MLflow run is opened.
Which model names exist is the model table's business (`models.MODELS`): the stages that
train pass it in, so this module stays free of torch.
"""

import difflib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from regression import PipelineError

DATASETS = ("synthetic", "fashion-mnist")  # folders under data/ that a model can learn from
# Fashion-MNIST's four IDX files, by split: (images, labels). `download.files` must name these.
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
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
    dataset: Literal[DATASETS]
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


def read_yaml(path: str | Path) -> Any:
    """A YAML file, read by `parse_yaml`; any failure is a ParamsError naming the file."""
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    try:
        return parse_yaml(path.read_text())
    except (OSError, UnicodeDecodeError, YAMLError) as error:
        raise ParamsError(f"{path}: cannot read params: {' '.join(str(error).split())}") from None


def load_params(path: str | Path = "params.yaml", models: Mapping[str, Any] | None = None) -> Params:
    """params.yaml, checked; with `models` (name -> spec with a `dataset`), `train` keys are too."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"{path}: invalid params:\n" + _describe(error)) from None
    problems = _model_problems(params, models) if models is not None else []
    if problems:
        raise ParamsError(f"{path}: invalid params:\n" + "\n".join(problems))
    return params


def _model_problems(params: Params, models: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, p in params.train.items():
        if name not in models:
            problems.append(f"  train.{name}: unknown model {name!r} (known models: {', '.join(models)})")
        elif p.dataset != models[name].dataset:
            problems.append(f"  train.{name}.dataset = {p.dataset!r}: model {name} learns from "
                            f"{models[name].dataset!r}")
    problems += [f"  sweep.{name}: no train.{name} to search around "
                 f"(models in train: {', '.join(params.train)})"
                 for name in params.sweep if name not in params.train]
    return problems


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        loc = [str(part) for part in problem["loc"]]
        if loc and loc[-1].startswith(("function-after", "str")):  # pydantic's validator steps
            loc = loc[:-1]
        key = ".".join(loc)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            lines.append(f"  {key}: missing key")
        elif problem["type"] == "extra_forbidden":
            near = difflib.get_close_matches(loc[-1], _known_keys(loc[:-1]), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            lines.append(f"  {key} = {problem['input']!r}: unknown key{hint}")
        elif key and len(repr(problem["input"])) > 80:  # a whole section: the message says enough
            lines.append(f"  {key}: {message}")
        elif key:
            lines.append(f"  {key} = {problem['input']!r}: {message}")
        else:
            lines.append(f"  {message}")
    return "\n".join(lines)


def _known_keys(loc: list[str]) -> list[str]:
    """The keys a section allows, for 'did you mean' hints."""
    model: type[BaseModel] = Params
    parts = iter(loc)
    for part in parts:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None) if field else None
        if get_origin(annotation) is dict:  # a table of sections (train.<model>): skip the name
            annotation = get_args(annotation)[1]
            if next(parts, None) is None:
                return []
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)
