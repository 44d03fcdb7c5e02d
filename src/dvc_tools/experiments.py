"""`make exps`: DVC's experiments as a table a person reads: the params that vary and each model's headline metric.

`dvc exp show` prints every param and every dependency's hash (75 columns, 1,000 wide here).
This reads its JSON and keeps, per experiment (and the commit it was run from), its name, the
params whose values differ between the rows shown, and one number per model: the first of the
headline metrics (`regression.headline`) its metrics file has. The table fits in `--width` columns (120)
without cutting a word: the columns that do not fit (params, or with -A the models of older
commits) are named below it.

Usage: python -m dvc_tools.experiments [--width 120] [-A]   (-A: experiments of every commit)
"""

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from regression.headline import HEADLINE, number, short
from regression.params import flat

PARAMS_FILE = "params.yaml"
MODEL_SECTIONS = ("train.", "sweep.")  # a model's own params: train.<model>.*, sweep.<model>.*


def headline(metrics: dict) -> dict[str, float]:
    """{"<model> <metric>": its headline number} from metrics files named metrics/<model>.json (or deeper)."""
    numbers = {}
    for path, content in metrics.items():
        data = (content or {}).get("data") or {}
        name = Path(path).with_suffix("").as_posix().removeprefix("metrics/")
        for key in HEADLINE:  # the first headline metric the file has
            if isinstance(data.get(key), (int, float)):
                numbers[f"{name} {short(key)}"] = data[key]
                break
    return numbers


def rows_of(show: list[dict]) -> list[dict]:
    """One row per commit and experiment in `dvc exp show --json`: name, flat params, headline metrics."""
    rows = []
    for commit in show:
        if commit.get("rev") == "workspace" or not commit.get("data"):
            continue
        for name, data in [(commit.get("name") or commit["rev"][:7], commit["data"])] + [
                (experiment.get("name") or rev["rev"][:7], rev.get("data"))
                for experiment in commit.get("experiments") or [] for rev in experiment["revs"]]:
            if data:
                params = flat(((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {})
                # a list (true_w) as its JSON text: a value to compare and show
                params = {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}
                rows.append({"name": name, "params": params, "metrics": headline(data.get("metrics") or {})})
    return rows


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key cut to its shortest ending that no other key shares (`softmax_nn.lr`)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            ending = ".".join(parts[-n:])
            if not any(other != key and (other == ending or other.endswith("." + ending)) for other in keys):
                break
        names[key] = ending
    return names


def model_of(metric: str) -> str:
    """The model a metrics column is of: 'softmax_nn test_acc' and 'sweep/softmax_nn val_acc' -> 'softmax_nn'."""
    return metric.split()[0].rsplit("/", 1)[-1]


def metric_cell(value) -> str:
    return number(value) if isinstance(value, (int, float)) else ""


def param_cell(value) -> str:
    return "" if value is None else str(value)


def table(rows: list[dict], width: int = 120) -> list[str]:
    """The lines to print: a header, one line per row, and the params left out for width."""
    if not rows:
        return ["no experiments yet: `dvc exp run -S train.softmax_nn.lr=0.1` makes one"]
    keys = sorted({k for row in rows for k in row["params"]})
    # A param varies if the rows that have it disagree (an older commit without it is no change);
    # the models' own first.
    varying = sorted((k for k in keys if len({json.dumps(row["params"][k]) for row in rows if k in row["params"]}) > 1),
                     key=lambda k: (not k.startswith(MODEL_SECTIONS), k))
    changed = {k.split(".")[1] for k in varying if k.startswith(MODEL_SECTIONS)}  # models whose params differ
    # The changed models' metrics first, then the first row's models (the newest commit's), then older ones (-A).
    metric_names = sorted({k for row in rows for k in row["metrics"]},
                          key=lambda m: (model_of(m) not in changed, m not in rows[0]["metrics"], m))
    names = short_names(keys)  # unique among all params: `softmax_nn.lr`, not `lr`
    first = [("experiment", [row["name"] for row in rows])]
    metrics = [(m, [metric_cell(row["metrics"].get(m)) for row in rows]) for m in metric_names]
    params = [(names[k], [param_cell(row["params"].get(k)) for row in rows]) for k in varying]
    required = [column for column in metrics if model_of(column[0]) in changed]
    # What tells the rows apart comes first: the changed models' metrics and the params that vary,
    # then the other metrics in order; shown as experiment, metrics, params. Whole columns only:
    # what does not fit is named below.
    kept, used, left_out = set(), 0, []
    for title, values in first + required + params + [m for m in metrics if m not in required]:
        w = max(len(title), *(len(v) for v in values))
        if kept and used + w > width:
            left_out.append(title)
            continue
        kept.add(title)
        used += w + 2
    widths = [(title, values, max(len(title), *(len(v) for v in values)))
              for title, values in first + metrics + params if title in kept]
    lines = ["  ".join(title.ljust(w) if i == 0 else title.rjust(w) for i, (title, _, w) in enumerate(widths))
             .rstrip()]
    for r in range(len(rows)):
        lines.append("  ".join(values[r].ljust(w) if i == 0 else values[r].rjust(w)
                               for i, (_, values, w) in enumerate(widths)).rstrip())
    if left_out:
        lines += textwrap.wrap(f"(not shown, for width: {', '.join(left_out)})", width,
                               break_long_words=False, break_on_hyphens=False)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=120, help="columns to fit in (default 120)")
    parser.add_argument("-A", "--all-commits", action="store_true", help="experiments of every commit")
    args = parser.parse_args(argv)
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))  # the project's, if not on PATH
    command = [dvc, "exp", "show", "--json", *(["-A"] if args.all_commits else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"error: dvc exp show --json failed: {result.stderr.strip()}", file=sys.stderr)
        return 1
    print("\n".join(table(rows_of(json.loads(result.stdout or "[]")), args.width)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
