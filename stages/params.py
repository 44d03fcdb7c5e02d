"""Stage `params`: refuse a section of params.yaml that no stage reads, and write what each sweep searches around.

Usage: python stages/params.py <output folder>

Every other stage depends on this one (on `sections.json` in its folder), so `dvc repro` and
`dvc exp run` stop here, in a second and before any other stage, at a section no stage reads
(`trian:` beside `train:`), naming it and the section it may be a misspelling of. It runs again
whenever params.yaml changes, and writes the same bytes unless what a stage reads from here
changed: `sections.json` (the sections the stages read) and, per sweep, `sweep-<model>.json`
(the params of `train.<model>` that its trials do not set, see `search.search_base`), so only
the stages whose own inputs changed run after it.
"""

from regression import stage
from regression.files import json_bytes, write_folder_atomic
from regression.params import ParamsError, check_unread
from regression.params_schema import Params
from regression.search import search_base


def main(params, args):
    raw = params.file
    check_unread(raw)
    train, sweep = raw.get("train") or {}, raw.get("sweep") or {}
    if not isinstance(train, dict) or not isinstance(sweep, dict):
        return  # the train and sweep stages say what is wrong with their section
    missing = [name for name in sweep if not isinstance(train.get(name), dict)]
    if missing:
        raise ParamsError("params.yaml: invalid params:\n" + "\n".join(
            f"  sweep.{name}: no train.{name} to search around (models in train: {', '.join(train)})"
            for name in missing))
    files = {"sections.json": json_bytes(list(Params.model_fields))}
    files |= {f"sweep-{name}.json": json_bytes(search_base(name, train[name])) for name in sweep}
    write_folder_atomic(args.out, files)
    print(f"params.yaml: every section is read by a stage; {args.out} written")


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("out", help="folder to write")
    stage.run(main, parser)
