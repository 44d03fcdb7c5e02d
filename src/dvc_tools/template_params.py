"""What dvc.yaml's templates read from params.yaml, checked before DVC reads it (`make run`, `make sweep`).

Usage: python -m dvc_tools.template_params [params.yaml]

DVC fills in every `${...}` of dvc.yaml before it runs any stage, so a train or sweep entry without
its `dataset` stops every DVC command with `Could not find 'item.dataset'`. This says which entry,
and what to write, in one line each; the stages check everything else.
"""

import sys
from pathlib import Path

from regression.params import ParamsError, dataset_names, read_yaml


def problems(raw) -> list[str]:
    """A line per section or entry dvc.yaml's templates cannot read."""
    if not isinstance(raw, dict):
        return []  # the params stage says what is wrong with the file
    datasets = ", ".join(dataset_names(raw))
    lines = []
    for section in ("datasets", "train", "sweep"):
        entries = raw.get(section, {} if section == "sweep" else None)  # a project may have no sweeps
        if not isinstance(entries, dict):
            lines.append(f"  {section} = {entries!r}: not a table; dvc.yaml makes a stage per entry of it")
            continue
        for name, entry in entries.items() if section != "datasets" else ():  # a row names no dataset
            if not isinstance(entry, dict):
                lines.append(f"  {section}.{name} = {entry!r:.60}: not a table of params; give it its keys")
            elif "dataset" not in entry:
                lines.append(f"  {section}.{name}.dataset: missing key; name what it learns from ({datasets})")
    return lines


def main(argv: list[str] | None = None) -> int:
    path = Path((argv or sys.argv[1:] or ["params.yaml"])[0])
    try:
        found = problems(read_yaml(path))
    except ParamsError as error:
        print(error, file=sys.stderr)
        return 2
    if found:
        print(f"{path}: invalid params (DVC cannot read dvc.yaml without them):\n" + "\n".join(found),
              file=sys.stderr)
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
