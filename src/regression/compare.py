"""The MLflow runs side by side in the terminal, best first, and the summary `make run` ends with.

Usage: python -m regression.compare [--model NAME] [--limit N]   (`make compare`)
       python -m regression.compare --summary                   (the end of `make run`)

Runs are grouped by model and ranked by validation accuracy where they have one, then test
accuracy (for the linear model: lowest test loss). Lines fit in 120 columns.
"""

import argparse
import json
import sys
from pathlib import Path

from regression.ui import DEFAULT_BASE_URL, run_list_url

WIDTH = 120


def rank_key(run) -> tuple:
    m = run.data.metrics
    if "val_accuracy" in m or "test_accuracy" in m:
        return (0, -m.get("val_accuracy", -1.0), -m.get("test_accuracy", -1.0))
    return (1, m.get("test_loss", float("inf")))


def number(value: float) -> str:
    return f"{value:.3g}" if 0 < abs(value) < 0.001 else f"{value:.4f}"


def cell(value, width: int) -> str:
    text = "" if value is None else number(value) if isinstance(value, float) else str(value)
    return (text if len(text) <= width else text[:width - 1] + "…").ljust(width)


def table(runs) -> list[str]:
    """One line per run: rank, metrics, DVC experiment (or commit), changed params, status."""
    columns = (("#", 3), ("val_acc", 8), ("test_acc", 8), ("test_loss", 9), ("experiment", 22))
    changed_width = WIDTH - sum(w + 1 for _, w in columns) - 10
    lines = [" ".join(cell(name, w) for name, w in columns) + " " + cell("changed params", changed_width)
             + " status"]
    for i, run in enumerate(sorted(runs, key=rank_key), start=1):
        m, tags = run.data.metrics, run.data.tags
        where = tags.get("dvc.experiment") or f"@ {tags.get('mlflow.source.git.commit', '?')[:7]}"
        values = (i, m.get("val_accuracy"), m.get("test_accuracy"), m.get("test_loss"), where)
        lines.append(" ".join(cell(v, w) for v, (_, w) in zip(values, columns)) + " "
                     + cell(tags.get("dvc.changed_params") or "-", changed_width) + " " + run.info.status)
    return [line.rstrip() for line in lines]


def compare(client, experiment_id: str, model: str | None, limit: int) -> list[str]:
    query = f"tags.model = '{model}'" if model else ""
    runs = client.search_runs([experiment_id], query, max_results=5000)
    by_model: dict[str, list] = {}
    for run in runs:
        by_model.setdefault(run.data.tags.get("model", "?"), []).append(run)
    lines = []
    for name, group in sorted(by_model.items()):
        lines += ["", f"{name}: {len(group)} runs" + (f", best {limit} shown" if len(group) > limit else "")]
        lines += table(group)[:limit + 1]
    return lines or ["no runs yet: run the pipeline first (`make run`)"]


def summary(client, experiment_id: str, uri: str) -> list[str]:
    """One line per model of params.yaml: the metrics this workspace's pipeline produced, its run."""
    from regression.params import read_yaml

    lines = []
    for model in read_yaml("params.yaml").get("train", {}):
        path = Path(f"metrics/{model}.json")
        metrics = json.loads(path.read_text()) if path.exists() else {}
        shown = ", ".join(f"{k} {number(v)}" for k, v in metrics.items() if k in
                          ("val_accuracy", "test_accuracy", "test_loss", "w_0", "w_1", "b"))
        runs = client.search_runs([experiment_id], f"tags.model = '{model}'", max_results=1,
                                  order_by=["attributes.start_time DESC"])
        run = "no MLflow run" if not runs else f"run '{runs[0].info.run_name}'" + (
            "" if runs[0].info.status == "FINISHED" else f" {runs[0].info.status}")
        lines.append(f"{model:16} {shown or 'no metrics yet'}; {run}")
    local = uri.startswith("sqlite:")  # shown by `make ui`; a server shows its own UI
    where = "MLflow (make ui)" if local else "MLflow"
    lines.append(f"{where}: {run_list_url(DEFAULT_BASE_URL if local else uri, experiment_id)}")
    return [line if len(line) <= WIDTH else line[:WIDTH - 1] + "…" for line in lines]


def main(argv: list[str] | None = None) -> int:
    from regression.tracking import TrackingError, open_experiment, tracking_uri

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="only this model's runs")
    parser.add_argument("--limit", type=int, default=20, help="runs shown per model (default 20)")
    parser.add_argument("--summary", action="store_true", help="one line per model, and the UI link")
    args = parser.parse_args(argv)
    try:
        experiment_id = open_experiment()
    except TrackingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from mlflow import MlflowClient

    client = MlflowClient()
    lines = (summary(client, experiment_id, tracking_uri()) if args.summary
             else compare(client, experiment_id, args.model, args.limit))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
