"""params.yaml, read as DVC reads it (YAML 1.2), each section checked by the stage that owns it.

A stage owns its section as dvc.yaml lists it (`download`, ..., `train.<model>`): before any
work it parses the file and checks that section (`load_section`), so a mistake is reported by
the stage whose key it is. A wrong type, an out-of-range value, a missing or unknown key each
give one line naming the key and the value. A section no stage reads (`trian:` beside `train:`)
is refused by the `params` stage, which every other stage waits for (`check_unread`).

An entry of `train` names its architecture (`architecture:`, by default the entry's own key) and
holds the params every model has (`TrainParams`) and that architecture's own, and only those.
Which params an architecture has is the model table's business: the model stages pass it in (no
torch here); without it, an entry's common params are checked and its own ones left alone.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import TypeAdapter, ValidationError

from regression import PipelineError
from regression.data import GENERATED, kind
from regression.params_messages import describe, unknown
from regression.params_schema import Params, TrainParams, AnyArchitecture, ParamsFile


class ParamsError(PipelineError, ValueError):
    """params.yaml is missing, unreadable or holds a value no stage can use."""


def parse_yaml(text: str) -> Any:
    """YAML as DVC reads params.yaml: YAML 1.2 (so `1e-3` is a number), plain types."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def flat(tree, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}: params as DVC names them (`train.softmax_nn.lr`)."""
    if not isinstance(tree, dict):
        return {prefix.removesuffix("."): tree}
    return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}


def read_yaml(path: str | Path) -> Any:
    """A YAML file, read by `parse_yaml`; any failure is a ParamsError naming the file."""
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    try:
        return parse_yaml(path.read_text())
    except (OSError, UnicodeDecodeError, YAMLError) as error:
        raise ParamsError(f"{path}: cannot read params: {' '.join(str(error).split())}") from None


def committed_params(revision: str = "HEAD") -> dict | None:
    """params.yaml as committed at `revision` (git), None outside a git repository or if unreadable."""
    import subprocess

    from ruamel.yaml.error import YAMLError

    try:
        shown = subprocess.run(["git", "show", f"{revision}:params.yaml"], capture_output=True, text=True, timeout=10)
        return parse_yaml(shown.stdout) or {} if shown.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, YAMLError):
        return None


def load_params(path: str | Path, models: Mapping[str, Any] | None = None) -> Params:
    """params.yaml, all checked; with `models` (the model table), each train entry's architecture too."""
    path = Path(path)
    raw = _read_sections(path)
    problems, train = [], {}
    try:
        checked = ParamsFile.model_validate(raw)
    except ValidationError as error:
        problems, checked = describe(error, ParamsFile).splitlines(), None
    entries, datasets = raw.get("train"), dataset_names(raw)
    for name, entry in (entries.items() if isinstance(entries, dict) else ()):
        if isinstance(entry, dict):
            train[name], entry_problems = _check_entry(name, entry, models, datasets)
            problems += entry_problems
    _raise_if(path, problems)
    _raise_if(path, [f"  sweep.{name}: no train.{name} to search around (models in train: "
                     f"{', '.join(train)})" for name in checked.sweep if name not in train])
    _raise_if(path, [line for name, sweep in checked.sweep.items() for line in dataset_problems(
        f"sweep.{name}.dataset", sweep.dataset, datasets, train[name].architecture, models)])
    params = Params.model_construct(**dict(checked) | {"train": train})
    params._file = raw
    return params


def load_section(path: str | Path, key: str | None = None,
                 models: Mapping[str, Any] | None = None) -> Params:
    """The params a stage owns: the file parsed, and its section `key` (`download`, ...,
    `train.<model>`; None for none) checked, in a Params holding that section alone (and the
    file as read: `Params.file`). With `models`, a train entry's architecture is checked too."""
    path = Path(path)
    raw = _read_sections(path)
    params = Params.model_construct()
    params._file = raw
    if key is None:
        return params
    section, _, model = key.partition(".")
    if section not in raw:
        _raise_if(path, [f"  {section}: missing key"])
    value, where = raw[section], (section,)
    if model:  # one model's entry of a table: `train.<model>`
        if not isinstance(value, dict) or model not in value:
            raise ParamsError(f"{key}: not in params.yaml (its models: "
                              f"{', '.join(value) if isinstance(value, dict) else 'none'})")
        value, where = value[model], (section, model)
    if section == "train" and model and isinstance(value, dict):
        checked, problems = _check_entry(model, value, models, dataset_names(raw))
        _raise_if(path, problems)
    else:
        annotation = ParamsFile.model_fields[section].annotation
        schema = get_args(annotation)[1] if model else annotation
        try:
            checked = TypeAdapter(schema).validate_python(value)
        except ValidationError as error:
            raise ParamsError(f"{path}: invalid params:\n" + describe(error, schema, where)) from None
    params = Params.model_construct(**{section: {model: checked} if model else checked})
    params._file = raw
    return params


def check_entry(name: str, entry: dict, models: Mapping[str, Any], datasets: list[str],
                path: str | Path = "params.yaml") -> TrainParams:
    """`entry` checked as the params of model `name` (a ParamsError naming each bad key)."""
    checked, problems = _check_entry(name, entry, models, datasets)
    _raise_if(Path(path), problems)
    return checked


def dataset_names(raw: dict) -> list[str]:
    """The datasets a params file (as read) offers: its rows of `datasets`, then the generated one."""
    rows = raw.get("datasets")
    return [*(rows if isinstance(rows, dict) else ()), GENERATED]


def dataset_problems(where: str, dataset: str, datasets: list[str], architecture: str,
                     models: Mapping[str, Any] | None) -> list[str]:
    """A line if `dataset` is none of `datasets`, or (with the model table) not of the kind the
    architecture takes; else none."""
    if dataset not in datasets:
        return [f"  {where} = {dataset!r}: no such dataset (datasets: {', '.join(datasets)}); "
                "name one, or add its row to `datasets`"]
    if models is not None and architecture in models and kind(dataset) != models[architecture].takes:
        takes = models[architecture].takes
        fits = [name for name in datasets if kind(name) == takes]
        return [f"  {where} = {dataset!r}: architecture {architecture} takes {takes}, {dataset} holds "
                f"{kind(dataset)} (datasets of {takes}: {', '.join(fits) or 'none'})"]
    return []


def _check_entry(name: str, entry: dict, models: Mapping[str, Any] | None,
                 datasets: list[str]) -> tuple[TrainParams | None, list]:
    """A train entry checked against its architecture's params: (the params, problem lines)."""
    architecture = entry.get("architecture", name)
    if not isinstance(architecture, str):
        return None, [f"  train.{name}.architecture = {architecture!r}: not a name; name one architecture"
                      + (f" (known architectures: {', '.join(models)})" if models else "")]
    if models is None:
        schema = AnyArchitecture
    elif architecture not in models:
        named = "architecture" in entry
        where = f"train.{name}.architecture = {architecture!r}" if named else f"train.{name}"
        return None, [f"  {where}: unknown architecture {architecture!r} ("
                      + ("" if named else "name one with `architecture:`; ")
                      + f"known architectures: {', '.join(models)})"]
    else:
        schema = models[architecture].params
    try:
        checked = schema.model_validate({"architecture": architecture} | entry)
    except ValidationError as error:
        return None, describe(error, schema, ("train", name)).splitlines()
    problems = dataset_problems(f"train.{name}.dataset", checked.dataset, datasets, architecture, models)
    return (None, problems) if problems else (checked, [])


def check_unread(raw: dict, path: str | Path = "params.yaml") -> None:
    """Refuse a section of the file as read that no stage reads: one line each, with the section
    it may be a misspelling of."""
    _raise_if(Path(path), [unknown([key], value, Params) for key, value in raw.items()
                           if key not in Params.model_fields])


def _read_sections(path: Path) -> dict:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        _raise_if(path, [f"  not a mapping of sections but {type(raw).__name__}: {raw!r:.80}"])
    return raw


def _raise_if(path: Path, problems: list[str]) -> None:
    if problems:
        raise ParamsError(f"{path}: invalid params:\n" + "\n".join(problems))
