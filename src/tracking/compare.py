"""The MLflow runs side by side in the terminal, best first, and the summary `make run` ends with.

Usage: python -m tracking.compare [--model NAME] [--limit N]   (`make compare`)
       python -m tracking.compare --summary                   (the end of `make run`)

Runs are grouped by model (those of params.yaml) and ranked by the registry's rule
(`registry.rank_key`, which the store applies as `registry.RANK_ORDER`): validation accuracy
where they have one, then test accuracy (for the linear model: lowest test loss). Each model's
heading counts all its runs; only the best `--limit` are fetched and shown. Lines fit in 120
columns: a long list of changed params goes on to the next lines, never cut.
"""

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

from regression.data import classifies, read_meta
from regression.headline import FIT_ERROR, HEADLINE, number, short
from regression.params import read_yaml
from regression.params_schema import SweepParams
from regression.search import search_base, trials
from tracking.naming import (
    CHANGED_TAG,
    CHOSEN_TAG,
    MODEL_TAG,
        run_of_outputs,
    runs_of,
    where_from,
)
from tracking.registry import RANK_ORDER, rank_key
from tracking.searching import PAGE_SIZE, count_tagged
from tracking.store import is_server, opened, tracking_uri
from tracking.ui import local_ui_url, run_list_links

WIDTH = 120


def cell(value, width: int) -> str:
    text = "" if value is None else number(value) if isinstance(value, float) else str(value)
    return (text if len(text) <= width else text[:width - 1] + "…").ljust(width)


def table(runs) -> list[str]:
    """One line per run, best first: rank, headline metrics, DVC experiment (or commit), changed
    params, status; changed params too long for their column go on below, in that column."""
    shown = [name for name in HEADLINE if any(name in run.data.metrics for run in runs)]  # no empty column
    labels = [short(name) for name in shown]
    columns = (("#", 3), *((label, max(len(label), 8)) for label in labels), ("experiment", 22))
    changed_width = WIDTH - sum(w + 1 for _, w in columns) - 10
    indent = " " * (WIDTH - changed_width - 10)
    lines = [" ".join(cell(name, w) for name, w in columns) + " " + cell("changed params", changed_width)
             + " status"]
    for i, run in enumerate(sorted(runs, key=lambda run: rank_key(run.data.metrics)), start=1):
        m, tags = run.data.metrics, run.data.tags
        values = (i, *(m.get(name) for name in shown), where_from(tags))
        changed = tags.get(CHANGED_TAG) or (
            f"sweep's refit: {tags[CHOSEN_TAG]}" if CHOSEN_TAG in tags else "-")
        first, *more = textwrap.wrap(changed, changed_width, break_on_hyphens=False) or ["-"]
        lines.append(" ".join(cell(v, w) for v, (_, w) in zip(values, columns)) + " "
                     + cell(first, changed_width) + " " + run.info.status)
        lines += [indent + text for text in more]
    return [line.rstrip() for line in lines]


def compare(client, experiment_ids: list[str], models: list[str], limit: int,
            page_size: int = PAGE_SIZE) -> list[str]:
    """Each model's best `limit` runs, ranked by the store, under the count of all its runs (a
    sweep's trials are shown by the UI, under their sweep)."""
    lines = []
    for name in models:
        best = runs_of(client, experiment_ids, name, order_by=RANK_ORDER, limit=limit, page_size=page_size)
        if not best:
            continue
        total = len(best) if len(best) < limit else count_tagged(client, experiment_ids, MODEL_TAG, name)
        heading = f"{name}: {total:,} run{'s' if total != 1 else ''}"
        lines += ["", heading + (f", the best {limit} shown" if total > limit else "")]
        lines += table(best)
    return lines or ["no runs yet: run the pipeline first (`make run`)"]


def stage_file(model: str, stage: str = "train", kind: str = "metrics", dvc_yaml: dict | None = None) -> Path:
    """Where the model's `stage` (train or sweep) writes its headline metrics (`kind` "metrics")
    or its model file ("model"), as dvc.yaml (read unless given) says."""
    do = (dvc_yaml or read_yaml("dvc.yaml"))["stages"][stage]["do"]
    paths = [next(iter(e)) if isinstance(e, dict) else e for e in do["metrics" if kind == "metrics" else "outs"]]
    template = paths[0] if kind == "metrics" else next(path for path in paths if path.endswith(".pt"))
    return Path(template.replace("${key}", model))


def metrics_file(model: str, stage: str = "train", dvc_yaml: dict | None = None) -> Path:
    return stage_file(model, stage, "metrics", dvc_yaml)


def sweep_estimate(params: dict, model: str, train_run) -> str:
    """How long the sweep of `model` would take here, roughly: its trials' and refit's epochs
    over the training rows (trials side by side, one per core), at the pace of the train stage's run (`train_run`, None: unknown)."""
    if train_run is None or train_run.info.end_time is None:
        return ""
    entry, sweep = params["train"][model], SweepParams(**params["sweep"][model])
    rows = read_meta(Path("data") / sweep.dataset)["rows"]["train"]
    trained_rows = read_meta(Path("data") / entry["dataset"])["rows"]["train"]
    settings = trials(search_base(model, entry), sweep)
    work = sum(trial["epochs"] * (rows - sweep.validation_size) for trial in settings)
    work = work / min(len(settings), os.cpu_count() or 1)  # a one-thread trial per core at once
    work += max(sweep.grid.epochs) * rows  # the refit of the chosen trial, at most
    seconds = (train_run.info.end_time - train_run.info.start_time) / 1000 * work / (entry["epochs"] * trained_rows)
    return f" (about {max(1, round(seconds / 60))} min here, at train@{model}'s pace)"


def summary(client, experiments: dict[str, str], uri: str) -> list[str]:
    """One line per model stage of params.yaml (train, then sweep): the metrics this workspace's
    pipeline produced, and the run that made its model file; then a link to each experiment
    ({dataset: id})."""
    lines, params, dvc_yaml = [], read_yaml("params.yaml"), read_yaml("dvc.yaml")
    trained = {}  # model: the run that made its train stage's model file
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
            model_file = stage_file(model, stage, "model", dvc_yaml)
            label = model if stage == "train" else f"{stage}@{model}"
            if stage == "sweep" and not model_file.exists():
                lines.append(f"{label:16} not run here: `make sweep`{sweep_estimate(params, model, trained.get(model))}")
                continue
            made_by = run_of_outputs(client, list(experiments.values()), model, f"{stage}@{model}", model_file)
            trained[model] = made_by
            run = "no MLflow run made its model file" if made_by is None else f"run '{made_by.info.run_name}'"
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
    params = read_yaml("params.yaml")
    models = [args.model] if args.model else list(dict.fromkeys([*params.get("train", {}),
                                                                 *params.get("sweep", {})]))
    lines = (summary(client, experiments, tracking_uri()) if args.summary
             else compare(client, list(experiments.values()), models, args.limit))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
