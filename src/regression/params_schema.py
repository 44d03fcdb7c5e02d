"""What each section of params.yaml holds: its keys, their types and ranges (pydantic, strict).

`Params` is the whole file; a stage checks only its own section (`regression.params`). A train
entry holds `TrainParams` and its architecture's own params (`params_of_architecture`).
"""

import inspect
import urllib.parse
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, create_model, model_validator

from regression.headline import TEST, TRAIN

URL_SCHEMES = ("http", "https", "file")
SCHEDULES = ("constant", "cosine", "step")  # learning-rate schedules (training.learning_rate)

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Seed = Annotated[int, Field(ge=0, lt=2 ** 64)]  # what torch.Generator.manual_seed accepts
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FileName = Annotated[str, Field(pattern=r"^[^/\\]+$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


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


def _distinct(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError("values repeat")
    return values


# Each split's IDX files: its images, then its labels.
SplitFiles = create_model("SplitFiles", __base__=_Section, **{
    split: (Annotated[list[FileName], Field(min_length=2, max_length=2)], ...) for split in (TRAIN, TEST)})


class DatasetParams(_Section):
    """A row of the `datasets` table: a dataset of images with class labels, as IDX files."""
    classes: Annotated[list[str], Field(min_length=2), AfterValidator(_distinct)]  # in label order
    source_env: EnvName  # a variable that may name a source (a URL or a folder) to try first
    sources: Annotated[list[Annotated[str, AfterValidator(_source_url)]], Field(min_length=1)]
    timeout_seconds: PositiveFloat  # deadline for one file from one source
    files: Annotated[dict[FileName, ExpectedFile], Field(min_length=1)]
    splits: SplitFiles
    validation_size: Annotated[int, Field(ge=0)]  # training images held out (seeded) for validation
    seed: Seed

    @model_validator(mode="after")
    def _splits_name_the_files(self):
        named = [name for pair in dict(self.splits).values() for name in pair]
        if unknown := [name for name in named if name not in self.files]:
            raise ValueError(f"splits name {', '.join(unknown)}, not in its files")
        if unused := [name for name in self.files if name not in named]:
            raise ValueError(f"files hold {', '.join(unused)}, in none of its splits")
        return self


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
    """The params of every model's entry; an architecture's own params are added to them
    (`params_of_architecture`)."""
    architecture: str  # a key of the model table; the loader puts in the entry's key if absent
    dataset: str  # a row of `datasets` or the generated one, of the kind its architecture takes
    seed: Seed
    lr: PositiveFloat
    batch_size: PositiveInt
    epochs: PositiveInt
    init_std: PositiveFloat
    weight_decay: Annotated[float, Field(ge=0)] = 0.0  # L2: 0 is the lesson's plain SGD
    schedule: Literal[SCHEDULES] = "constant"  # the learning rate per epoch (training.learning_rate)


class AnyArchitecture(TrainParams):
    """An entry checked without the model table: its architecture's own params are not known here."""
    model_config = ConfigDict(extra="ignore")


def params_of_architecture(build: Callable) -> type[TrainParams]:
    """TrainParams and the params an architecture's class takes after its config, as typed there
    (`hidden: PositiveInt`): what an entry of that architecture holds."""
    own = list(inspect.signature(build).parameters.values())[1:]
    if not own:
        return TrainParams
    return create_model(f"{build.__name__}Params", __base__=TrainParams, **{
        p.name: (Any if p.annotation is p.empty else p.annotation, ... if p.default is p.empty else p.default)
        for p in own})


def own_params(params: TrainParams) -> dict:
    """The architecture's own params of an entry (`{"hidden": 256}`): what shapes its model."""
    return {key: getattr(params, key) for key in type(params).model_fields if key not in TrainParams.model_fields}


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
    dataset: str                  # what it learns from (as a train entry's `dataset`)
    validation_size: PositiveInt  # training images held out (seeded) to choose on
    seed: Seed                    # of the validation split and of the sample
    sample: Annotated[int, Field(ge=0)]  # 0: every combination; n: a seeded random n of them
    grid: SearchSpace


class Params(_Section):
    datasets: dict[str, DatasetParams]  # one row per dataset of images
    generate: GenerateParams
    samples: SamplesParams
    train: Annotated[dict[str, TrainParams], Field(min_length=1)]  # each entry checked by `check_entry`
    # One per model that has a sweep stage (sweep@<model>); each searches around train.<model>.
    sweep: dict[str, SweepParams] = {}
    _file: dict = PrivateAttr(default_factory=dict)

    @property
    def file(self) -> dict:
        """The whole of params.yaml as read (plain types), for what needs more than a section
        (the run name's diff): read once per stage."""
        return self._file


class ParamsFile(Params):
    """The whole file, its train entries left to `check_entry` (which knows their architectures)."""
    train: Annotated[dict[str, dict], Field(min_length=1)]
