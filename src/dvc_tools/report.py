"""`make report`: what a change did to the results, as Markdown: params old → new, metrics old → new, curves.

Usage: python -m dvc_tools.report [--base REV] [--new REV] [--out report]

Compares the workspace (or `--new`) against `--base`: by default the commit the change started from,
the merge base with `main` (else `HEAD~1`). It reads DVC's own diffs (`dvc params diff`, `dvc metrics
diff`) and each model's history file at both revisions, so it needs no MLflow store. Writes
`<out>/report.md`, prints it, and draws `<out>/<model>-curves.png` (old dashed, new solid) for each
trained model whose headline metrics changed. Lines fit 120 columns; the tables are GitHub Markdown.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from matplotlib.figure import Figure

from regression.figures import png_bytes
from regression.files import write_bytes_atomic
from regression.headline import ACCURACY, HEADLINE, LOSS, TEST, TRAIN, VAL, metric, number

SPLIT_COLOURS = {TRAIN: "tab:blue", VAL: "tab:orange", TEST: "tab:green"}


class ReportError(Exception):
    """A revision or a diff the report cannot read."""


def git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def default_base() -> str:
    """The commit the change started from: the merge base with main, else the previous commit."""
    head = git("rev-parse", "HEAD")
    base = git("merge-base", "HEAD", "main")
    if base and base != head:
        return base
    if git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}"):
        return "HEAD~1"
    raise ReportError("no base to compare with: HEAD has no parent and no merge base with main; "
                      "give one (make report BASE=<rev>)")


def check_revision(rev: str, name: str) -> str:
    if git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}") is None:
        raise ReportError(f"{name}={rev} is not a commit of this repository; name a branch, tag or commit "
                          "(git log --oneline)")
    return rev


def dvc_diff(kind: str, base: str, new: str | None) -> dict:
    """`dvc <kind> diff --json` (params or metrics) of base against new (None: the workspace)."""
    command = [sys.executable, "-m", "dvc", kind, "diff", base, *([new] if new else []), "--json", *(["--all"] if kind == "metrics" else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        said = result.stderr.strip().splitlines()
        raise ReportError(f"`dvc {kind} diff {base} {new or ''}` failed: {said[-1] if said else result.returncode}")
    return json.loads(result.stdout or "{}")


def model_of(path: str) -> str:
    """metrics/mlp.json -> mlp; metrics/sweep/mlp.json -> sweep@mlp."""
    parts = Path(path).with_suffix("").parts[1:]
    return "@".join(parts)


def change_text(name: str, old, new) -> str:
    """'+0.0071 better', '-0.0020 worse', 'same'; 'added' or 'gone' where a side has none."""
    if old is None or new is None:
        return "added" if old is None else "gone"
    difference = new - old
    if difference == 0:
        return "same"
    better = difference * HEADLINE[name] > 0
    return f"{'+' if difference > 0 else '-'}{number(abs(difference))} {'better' if better else 'worse'}"


def metric_rows(diff: dict) -> list[tuple[str, str, object, object]]:
    """(model, metric, old, new) of every headline metric of every metrics file, in a stable order."""
    rows = []
    for path in sorted(diff):
        for name in HEADLINE:
            if name in diff[path]:
                rows.append((model_of(path), name, diff[path][name].get("old"), diff[path][name].get("new")))
    return rows


def history(path: str, rev: str | None) -> list[dict] | None:
    """A model's history file at `rev` (None: the workspace), or None if it has none there."""
    text = git("show", f"{rev}:{path}") if rev else (Path(path).read_text() if Path(path).exists() else None)
    return json.loads(text) if text else None


def curves(model: str, old: list[dict] | None, new: list[dict] | None) -> Figure:
    """Loss (and accuracy, for a classifier) per epoch and split: the base's dashed, the new solid."""
    histories = [(h, style) for h, style in ((old, "--"), (new, "-")) if h]
    kinds = [LOSS] + ([ACCURACY] if any(metric(TEST, ACCURACY) in h[0] for h, _ in histories) else [])
    figure = Figure(figsize=(5.5 * len(kinds), 4))
    for ax, kind in zip(figure.subplots(1, len(kinds), squeeze=False)[0], kinds):
        for h, style in histories:
            for split, colour in SPLIT_COLOURS.items():
                if metric(split, kind) in h[0]:
                    ax.plot([r["epoch"] for r in h], [r[metric(split, kind)] for r in h], style, color=colour,
                            label=f"{split} ({'base' if style == '--' else 'new'})")
        values = [r[k] for h, _ in histories for r in h for k in r if k.endswith(kind) and k != "epoch"]
        if kind == LOSS and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")  # a squared error from 15 down to 1e-4
        ax.set(xlabel="epoch", ylabel=kind, title=f"{model}: {kind}, base dashed, new solid")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.tight_layout()
    return figure


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A Markdown table with its columns aligned, so that it reads in a terminal too."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]


def report(base: str, new: str | None, out: Path) -> list[str]:
    """The report's lines; writes its curves into `out`."""
    params = {key: change for changes in dvc_diff("params", base, new).values() for key, change in changes.items()}
    rows = metric_rows(dvc_diff("metrics", base, new))
    label = lambda rev: git("rev-parse", "--short", rev) or rev
    lines = [f"# What the change did: {label(base)} → {label(new) if new else 'the workspace'}", "", "## Params", ""]
    lines += table(("param", "old", "new"), [(key, json.dumps(c.get("old")), json.dumps(c.get("new")))
                                              for key, c in sorted(params.items())]) if params else ["No params changed."]
    changed = [row for row in rows if row[2] != row[3]]
    lines += ["", "## Results", ""]
    if not changed:
        return lines + ["No results changed."]
    models = list(dict.fromkeys(model for model, *_ in changed))
    show = lambda value: "-" if value is None else number(value)
    lines += table(("model", "metric", "old", "new", "change"),
                   [(m, name, show(old), show(value), change_text(name, old, value))
                    for m, name, old, value in rows if m in models])
    unchanged = [m for m in dict.fromkeys(model for model, *_ in rows) if m not in models]
    lines += ["", f"Unchanged: {', '.join(unchanged)}."] if unchanged else []
    lines += ["", "## Learning curves", ""]
    for model in models:
        path = f"metrics/{model}/history.json"
        old, now = (None, None) if "@" in model else (history(path, base), history(path, new))
        if not (old or now):
            lines.append(f"- {model}: no history per epoch (a sweep's trials are in its trials.csv)")
            continue
        write_bytes_atomic(out / f"{model}-curves.png", png_bytes(curves(model, old, now)))
        lines.append(f"![{model}: learning curves, base dashed, new solid]({model}-curves.png)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the revision to compare with (default: the merge base with main, else HEAD~1)")
    parser.add_argument("--new", help="the revision to report on (default: the workspace)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="the folder of report.md and its PNGs")
    args = parser.parse_args(argv)
    try:
        base = check_revision(args.base, "BASE") if args.base else default_base()
        new = check_revision(args.new, "NEW") if args.new else None
        lines = report(base, new, args.out)
    except ReportError as error:
        print(f"make report: {error}", file=sys.stderr)
        return 2
    text = "\n".join(lines) + "\n"
    write_bytes_atomic(args.out / "report.md", text.encode())
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
