"""The MLflow runs side by side in the terminal, best first, and the summary `make run` ends with.

Usage: python -m regression.tracking.compare [--model NAME] [--limit N]   (`make compare`)
       python -m regression.tracking.compare --summary                   (the end of `make run`)

Runs are grouped by model and ranked by the registry's rule (`registry.rank_key`): validation
accuracy where they have one, then test accuracy (for the linear model: lowest test loss).
Lines fit in 120 columns.
"""

import argparse
import json
import sys
from pathlib import Path

from regression.data import classifies
from regression.headline import FIT_ERROR, HEADLINE, number, short
from regression.params import read_yaml
from regression.tracking.naming import CHANGED_TAG, CHOSEN_TAG, MODEL_TAG, runs_of, where_from
from regression.tracking.registry import rank_key
from regression.tracking.store import is_server, opened, tracking_uri
from regression.tracking.ui import local_ui_url, run_list_links

WIDTH = 120


def cell(value, width: int) -> str:
    text = "" if value is None else number(value) if isinstance(value, float) else str(value)
    return (text if len(text) <= width else text[:width - 1] + "…").ljust(width)


def table(runs) -> list[str]:
    """One line per run, best first: rank, headline metrics, DVC experiment (or commit), changed
    params, status."""
    shown = [name for name in HEADLINE if any(name in run.data.metrics for run in runs)]  # no empty column
    labels = [short(name) for name in shown]
    columns = (("#", 3), *((label, max(len(label), 8)) for label in labels), ("experiment", 22))
    changed_width = WIDTH - sum(w + 1 for _, w in columns) - 10
    lines = [" ".join(cell(name, w) for name, w in columns) + " " + cell("changed params", changed_width)
             + " status"]
    for i, run in enumerate(sorted(runs, key=lambda run: rank_key(run.data.metrics)), start=1):
        m, tags = run.data.metrics, run.data.tags
        values = (i, *(m.get(name) for name in shown), where_from(tags))
        changed = tags.get(CHANGED_TAG) or (
            f"sweep's refit: {tags[CHOSEN_TAG]}" if CHOSEN_TAG in tags else "-")
        lines.append(" ".join(cell(v, w) for v, (_, w) in zip(values, columns)) + " "
                     + cell(changed, changed_width) + " " + run.info.status)
    return [line.rstrip() for line in lines]


def compare(client, experiment_ids: list[str], model: str | None, limit: int) -> list[str]:
    by_model: dict[str, list] = {}
    for run in runs_of(client, experiment_ids, model, max_results=5000):
        if MODEL_TAG in run.data.tags:  # a sweep's trials are shown by the UI, under their sweep
            by_model.setdefault(run.data.tags[MODEL_TAG], []).append(run)
    lines = []
    for name, group in sorted(by_model.items()):
        count = f"{len(group)} run{'s' if len(group) != 1 else ''}"
        lines += ["", f"{name}: {count}" + (f", best {limit} shown" if len(group) > limit else "")]
        lines += table(group)[:limit + 1]
    return lines or ["no runs yet: run the pipeline first (`make run`)"]


def metrics_file(model: str, stage: str = "train", dvc_yaml: dict | None = None) -> Path:
    """Where the model's `stage` (train or sweep) writes its headline metrics, as dvc.yaml (read
    unless given) says."""
    [entry] = (dvc_yaml or read_yaml("dvc.yaml"))["stages"][stage]["do"]["metrics"]
    template = next(iter(entry)) if isinstance(entry, dict) else entry
    return Path(template.replace("${key}", model))


def summary(client, experiments: dict[str, str], uri: str) -> list[str]:
    """One line per model stage of params.yaml (train, then sweep): the metrics this workspace's
    pipeline produced, and its run; then a link to each experiment ({dataset: id})."""
    lines, params, dvc_yaml = [], read_yaml("params.yaml"), read_yaml("dvc.yaml")
    for stage in ("train", "sweep"):
        for model in params.get(stage, {}):
            path = metrics_file(model, stage, dvc_yaml)
            metrics = json.loads(path.read_text()) if path.exists() else {}
            # The headline metrics, and a regressor's fit (w and b); the rest (their errors, a sweep's
            # choice) would push the run off the line: `make compare` and the UI show them.
            keys = [k for k in HEADLINE if k in metrics]
            if not classifies(params["train"][model]["dataset"]):
                keys += [k for k in metrics if k not in HEADLINE and not k.endswith(FIT_ERROR)]
            shown = ", ".join(f"{k} {number(metrics[k])}" for k in keys if isinstance(metrics[k], float))
            runs = runs_of(client, list(experiments.values()), model, stage=f"{stage}@{model}", max_results=1,
                           order_by=["attributes.start_time DESC"])
            run = "no MLflow run" if not runs else f"run '{runs[0].info.run_name}'" + (
                "" if runs[0].info.status == "FINISHED" else f" {runs[0].info.status}")
            label = model if stage == "train" else f"{stage}@{model}"
            lines.append(f"{label:16} {shown or 'no metrics yet'}; {run}")
    local = not is_server(uri)  # shown by `make ui`; a server shows its own UI
    where = "MLflow (make ui)" if local else "MLflow"
    lines.append(f"{where}, an experiment per dataset:")
    lines += run_list_links(local_ui_url() if local else uri, experiments)
    lines.append("More: make compare (the runs, best first), make exps (DVC's experiments), "
                 "dvc plots show (the charts)")
    return [line if len(line) <= WIDTH else line[:WIDTH - 1] + "…" for line in lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="only this model's runs")
    parser.add_argument("--limit", type=int, default=20, help="runs shown per model (default 20)")
    parser.add_argument("--summary", action="store_true", help="one line per model, and the UI link")
    args = parser.parse_args(argv)
    if (experiments := opened()) is None:
        return 1
    from mlflow import MlflowClient

    client = MlflowClient()
    lines = (summary(client, experiments, tracking_uri()) if args.summary
             else compare(client, list(experiments.values()), args.model, args.limit))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
