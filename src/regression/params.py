"""params.yaml, read as DVC reads it (YAML 1.2), each section checked by the stage that owns it.

A stage owns its section as dvc.yaml lists it (`download`, ..., `train.<model>`): before any
work it parses the file and checks that section (`load_section`), so a mistake is reported by
the stage whose key it is. A wrong type, an out-of-range value, a missing or unknown key each
give one line naming the key and the value. A section no stage reads (`trian:` beside `train:`)
would pass `dvc repro` unnoticed: `make run` first refuses it (`python -m regression.params`).
Model names are the model table's business: the train stage passes it in (no torch here).
"""

import difflib
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError,
                      field_validator)

from regression import PipelineError
from regression.data import DATASETS
from regression.fashion_mnist import FASHION_MNIST_FILES

# `download.files` must name Fashion-MNIST's four files.
FashionMnistFile = Literal[tuple(name for pair in FASHION_MNIST_FILES.values() for name in pair)]
URL_SCHEMES = ("http", "https", "file")

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


class Params(_Section):
    download: DownloadParams
    prepare: PrepareParams
    generate: GenerateParams
    samples: SamplesParams
    train: Annotated[dict[str, TrainParams], Field(min_length=1)]


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
    """params.yaml, all checked; with `models` (name -> spec with a `dataset`), `train` keys are too."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"{path}: invalid params:\n" + _describe(error)) from None
    _raise_if(path, _model_problems(params.train, models) if models is not None else [])
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
        raise ParamsError(f"{path}: invalid params:\n" + _describe(error, where)) from None
    if model:
        checked = {model: checked}
        _raise_if(path, _model_problems(checked, models) if models is not None else [])
    return Params.model_construct(**{section: checked})


def check_unread(path: str | Path = "params.yaml") -> None:
    """Refuse a section that no stage reads: one line each, with the section it may be a misspelling of."""
    path = Path(path)
    raw = _read_sections(path)
    _raise_if(path, [_unknown([key], value) for key, value in raw.items() if key not in Params.model_fields])


def _unknown(loc: list[str], value: Any) -> str:
    """An unknown key (a section: one no stage reads), with the known one it may be a misspelling of."""
    near = difflib.get_close_matches(loc[-1], _known_keys(loc[:-1]), n=1)
    what = "no stage reads it" if len(loc) == 1 else "unknown key"
    return f"  {'.'.join(loc)} = {value!r}: {what}" + (f" (did you mean {near[0]!r}?)" if near else "")


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


def _describe(error: ValidationError, where: tuple[str, ...] = ()) -> str:
    """One line per problem; `where` is the key of what was validated."""
    lines = []
    for problem in error.errors():
        loc = [*where, *(str(part) for part in problem["loc"])]
        if loc and loc[-1].startswith(("function-after", "str")):  # pydantic's validator steps
            loc = loc[:-1]
        key = ".".join(loc)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            lines.append(f"  {key}: missing key")
        elif problem["type"] == "extra_forbidden":
            lines.append(_unknown(loc, problem["input"]))
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


if __name__ == "__main__":  # python -m regression.params [params.yaml]: what `make run` checks first
    try:
        check_unread(*sys.argv[1:])
    except ParamsError as error:
        sys.exit(f"error: {error}")
