"""Looking at the results as README says: the summary `make run` ends with, `make compare`,
`dvc plots show`; the checks `make run` makes first and where its data comes from; what each run
and registered version holds, and where runs of `dvc exp run --temp` and `--queue` land when no
tracking URI is set.

The commands run in the shared prepared projects (tests/projects.py `reproduced`, `swept`), as
a user types them; only the `--temp` run takes a copy of its own.
"""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from projects import (
    MODELS,
    SWEEP_LEARNING_RATES,
    LINEAR_LEARNING_RATES,
    copy_of,
    edit_params,
    environment,
    read_json,
    run,
    runs_by_model,
    stages_run,
    store_uri,
)

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parent.parent


def make(project: Path, *args: str, env: dict | None = None) -> str:
    result = run(project, "make", "--no-print-directory", f"VENV={VENV}", *args, env=env)
    return result.stdout + result.stderr


def numbers(text: str) -> dict[str, float]:
    """{'test_accuracy': 0.98, ...} from 'test_accuracy 0.9800, test_loss 0.0123'."""
    return {key: float(value) for key, value in re.findall(r"(\w+) (-?[\d.]+(?:e-?\d+)?)", text)}


def test_make_run_ends_with_each_models_metrics_and_run(reproduced):
    """`make run` on a pipeline that is up to date: nothing re-runs, then one line per model with
    the headline metrics of metrics/<model>.json and the model's MLflow run, then the UI link."""
    path, _, _ = reproduced
    output = make(path, "run")
    assert stages_run(output) == set()
    client = MlflowClient(store_uri(path))
    by_model = runs_by_model(client)
    lines = {line.split()[0]: line for line in output.splitlines() if line.split()[:1] and
             line.split()[0] in MODELS}
    assert set(lines) == set(MODELS), output
    for model in MODELS:
        shown, _, run_part = lines[model].removeprefix(model).partition(";")
        metrics = read_json(path / f"metrics/{model}.json")
        shown = numbers(shown)
        assert shown, lines[model]
        for key, value in shown.items():
            assert value == pytest.approx(metrics[key], rel=1e-3, abs=1e-4), (key, lines[model])
        assert {"test_loss"} <= set(shown) and ("test_accuracy" in shown) == ("test_accuracy" in metrics)
        [r] = by_model[model]
        assert run_part.strip() == f"run '{r.info.run_name}'"  # finished: no status shown
    # each dataset's experiment (linear's first, as in params.yaml), then its sweeps'
    keys = ("synthetic", "fashion-mnist", "fashion-mnist/sweeps")
    heading, *links, more = output.splitlines()[-2 - len(keys):]
    assert heading.startswith("MLflow (make ui)"), output
    assert len(links) == len(keys), output
    for link, key in zip(links, keys):
        experiment = client.get_experiment_by_name(key).experiment_id
        assert link.split()[0] == key and f"/#/experiments/{experiment}/runs?" in link, link
    assert all(command in more for command in ("make compare", "make exps", "dvc plots show")), more


def test_each_dataset_has_its_own_experiment(reproduced):
    """The linear model's MSE and the softmax models' cross-entropy are both train_loss and
    test_loss: each dataset's runs (a sweep's trials too) are in an experiment of their own, so
    no chart of MLflow's UI puts the two kinds of loss together."""
    path, _, _ = reproduced
    client = MlflowClient(store_uri(path))
    dataset_of = {model: section["dataset"] for model, section in
                  yaml.safe_load((path / "params.yaml").read_text())["train"].items()}
    found: dict[str, list] = {}
    for experiment in client.search_experiments():
        for r in client.search_runs([experiment.experiment_id]):
            model = r.data.tags.get("model") or r.data.tags["sweep.model"]
            found.setdefault(experiment.name, []).append(dataset_of[model])
    assert {name: set(datasets) for name, datasets in found.items()} == {
        "synthetic": {"synthetic"}, "fashion-mnist": {"fashion-mnist"},
        "fashion-mnist/sweeps": {"fashion-mnist"}}  # a sweep's runs, apart


def compare_rows(output: str, model: str) -> list[dict[str, str]]:
    """The rows of `model`'s table in `make compare`'s output, {column: text}, cut where the
    header's column names start."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{model}: "))
    header = lines[start + 1]
    names = [name for name in ("#", "val_acc", "test_acc", "test_loss", "experiment", "changed params")
             if name in header]  # a metric no run has gets no column
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines[start + 2:]:
        assert len(line) <= 120, line
        if line.startswith(" " * starts[-1]) and line.strip():  # changed params, continued
            rows[-1]["changed params"] += " " + line.strip()
            continue
        if not line.strip() or not line.split()[0].isdigit():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        changed, _, status = cells[-1].rpartition(" ")
        rows.append(dict(zip(names, cells[:-1] + [changed.strip()])) | {"status": status})
    return rows


def test_make_compare_lists_every_swept_run_with_its_metrics(swept):
    """`make compare MODEL=softmax_nn` on the sweep's store: every run once, with its metrics,
    DVC experiment, changed params and status. (The tiny data gives the runs equal accuracies:
    the ranking is checked on runs made to differ, below.)"""
    path, _ = swept
    env = environment(MLFLOW_TRACKING_URI=store_uri(path))
    output = make(path, "compare", "MODEL=softmax_nn", env=env)
    runs = runs_by_model(MlflowClient(store_uri(path)))["softmax_nn"]
    assert f"softmax_nn: {len(runs)} runs" in output, output
    rows = compare_rows(output, "softmax_nn")
    by_experiment = {r.data.tags["dvc.experiment"]: r for r in runs}
    assert [row["#"] for row in rows] == [str(i) for i in range(1, len(runs) + 1)]
    assert sorted(row["experiment"] for row in rows) == sorted(by_experiment), output
    for row in rows:
        r = by_experiment[row["experiment"]]
        assert float(row["val_acc"]) == pytest.approx(r.data.metrics["val_accuracy"], abs=1e-4)
        assert float(row["test_acc"]) == pytest.approx(r.data.metrics["test_accuracy"], abs=1e-4)
        assert row["status"] == "FINISHED" and row["changed params"] == r.data.tags["dvc.changed_params"]


# Runs whose metrics differ, named best first as README ranks them: validation accuracy where a
# run has one, then test accuracy; for the linear model, the lowest test loss.
RANKED_RUNS = {
    "softmax_nn": [("val-tie-better-test", {"val_accuracy": 0.9, "test_accuracy": 0.85}),
                   ("val-tie-worse-test", {"val_accuracy": 0.9, "test_accuracy": 0.8}),
                   ("lower-val-best-test", {"val_accuracy": 0.85, "test_accuracy": 0.95}),
                   ("no-validation", {"test_accuracy": 0.99})],
    "linear": [("lower-loss", {"test_loss": 0.1}), ("higher-loss", {"test_loss": 0.2})],
}


def test_make_compare_ranks_runs_best_first(reproduced, tmp_path):
    path, _, _ = reproduced
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("ranked")
    for model, ranked in RANKED_RUNS.items():
        for name, metrics in ranked:  # made best first: MLflow lists the newest first, i.e. worst first
            run_id = client.create_run(experiment, tags={"model": model, "dvc.experiment": name}).info.run_id
            for key, value in metrics.items():
                client.log_metric(run_id, key, value)
            client.set_terminated(run_id)
    env = environment(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME="ranked")
    output = make(path, "compare", env=env)
    for model, ranked in RANKED_RUNS.items():
        shown = [row["experiment"] for row in compare_rows(output, model)]
        assert shown == [name for name, _ in ranked], output
    only = make(path, "compare", "MODEL=linear", env=env)
    assert "linear: 2 runs" in only and "softmax_nn" not in only, only


def test_make_compare_shows_every_model_of_the_pipeline(reproduced):
    path, _, _ = reproduced
    output = make(path, "compare")
    head = run(path, "git", "rev-parse", "HEAD").stdout.strip()
    swept = yaml.safe_load((path / "params.yaml").read_text()).get("sweep", {})
    for model in MODELS:
        runs = 1 + (model in swept)  # its train run, and its sweep's (the refit champion's)
        assert f"{model}: {runs} run{'s' if runs > 1 else ''}\n" in output, output
        rows = compare_rows(output, model)
        # No train run has a validation split; a sweep's run has its chosen trial's: no empty column.
        assert ("val_acc" in rows[0]) == (model in swept), rows
        assert len(rows) == runs and all(row["experiment"] == f"@ {head[:7]}" for row in rows), rows
        assert all(row["status"] == "FINISHED" for row in rows), rows
        # The sweep's refit says so, and what it chose: not the same line as a plain train run.
        assert sum(row["changed params"].startswith("sweep's refit: ") for row in rows) == runs - 1, rows
        client = MlflowClient(store_uri(path))
        chosen = [r.data.tags["sweep.chosen"] for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()], f"tags.model = '{model}'")
            if "sweep.chosen" in r.data.tags]
        assert sorted(row["changed params"] for row in rows if row["changed params"].startswith("sweep's"))\
            == sorted(f"sweep's refit: {text}" for text in chosen), rows  # every value, none cut
        for stage in ("train", "sweep")[:runs]:
            metrics = read_json(path / f"metrics/{'sweep/' if stage == 'sweep' else ''}{model}.json")
            assert any(float(row["test_loss"]) == pytest.approx(metrics["test_loss"], rel=1e-3, abs=1e-4)
                       for row in rows), (stage, rows)


# dvc plots show


def test_dvc_plots_show_renders_every_plot_of_dvc_yaml_with_its_data(reproduced, tmp_path):
    """Every plot of dvc.yaml is rendered: each dataset's samples from its samples stage, and each
    model's from its train stage (a model added to params.yaml, the variant here, gets its own): charts
    with one point per record of their file, images as the files are; `dvc plots show` also writes its page."""
    path, _, _ = reproduced
    shown = json.loads(run(path, "dvc", "plots", "show", "--json", "-o", str(tmp_path / "json")).stdout)
    assert not shown.get("errors"), shown["errors"]
    rendered = shown["data"]
    page = run(path, "dvc", "plots", "show", "-o", str(tmp_path / "html"))
    html = (tmp_path / "html" / "index.html").read_text()
    assert "index.html" in page.stdout

    images = [f"metrics/{dataset}-samples.png" for dataset in yaml.safe_load((path / "params.yaml").read_text())["datasets"]]
    for model in MODELS:
        images += [f"metrics/{model}/figures/{p.name}" for p in sorted((path / f"metrics/{model}/figures").iterdir())]
        assert f"metrics/{model}/figures/learning_curves.png" in images
        history = f"metrics/{model}/history.json"
        [plot] = rendered[history]
        assert plot["type"] == "vega"
        values = plot["content"]["data"]["values"]
        assert [int(row["epoch"]) for row in values] == [r["epoch"] for r in read_json(path / history)]
        assert [float(row["test_loss"]) for row in values] == [r["test_loss"] for r in read_json(path / history)]
        assert f"{model}, test loss per epoch" in html
    for name in images:
        [plot] = rendered[name]
        assert plot["type"] == "image"
        assert Path(plot["url"]).read_bytes() == (path / name).read_bytes()


def test_each_runs_learning_curves_are_on_its_mlflow_run(reproduced, tmp_path):
    path, _, _ = reproduced
    client = MlflowClient(store_uri(path))
    for model, [r] in runs_by_model(client).items():
        logged = client.download_artifacts(r.info.run_id, "evaluation/learning_curves.png", str(tmp_path / model))
        assert Path(logged).read_bytes() == (path / f"metrics/{model}/figures/learning_curves.png").read_bytes()


def test_queued_experiments_land_in_the_projects_store_each_registering_a_tagged_version(swept):
    """`dvc exp run --queue` and `--run-all` with no MLFLOW_TRACKING_URI: every run lands in the
    project's mlflow.db and registers one version, tagged with its run, DVC experiment, commit and
    headline metrics."""
    from regression.headline import HEADLINE

    path, _ = swept
    assert not list((path / ".dvc").rglob("mlflow.db"))  # not in the queue's copies
    client = MlflowClient(store_uri(path))
    by_model = runs_by_model(client)
    assert {model: sorted(r.data.params["lr"] for r in runs) for model, runs in by_model.items()} == {
        "softmax_nn": sorted(SWEEP_LEARNING_RATES), "linear": sorted(LINEAR_LEARNING_RATES)}
    experiments = set(run(path, "dvc", "exp", "list", "--name-only").stdout.split())
    for model, runs in by_model.items():
        dataset = "synthetic" if model == "linear" else "fashion-mnist"
        versions = {v.run_id: v for v in client.search_model_versions(f"name = '{dataset}-{model}'")}
        assert set(versions) == {r.info.run_id for r in runs}
        for r in runs:
            tags = versions[r.info.run_id].tags
            assert tags["run_name"] == r.info.run_name and tags["dvc.experiment"] in experiments
            assert tags["dvc.experiment"] == r.data.tags["dvc.experiment"]
            commit = tags["mlflow.source.git.commit"]
            assert commit == r.data.tags["mlflow.source.git.commit"]
            assert run(path, "git", "cat-file", "-t", commit).stdout.strip() == "commit"
            headline = [key for key in HEADLINE if key in r.data.metrics]
            assert headline == (list(HEADLINE) if model != "linear" else ["test_loss"])
            assert {key: tags[key] for key in headline} == {
                key: f"{r.data.metrics[key]:.6g}" for key in headline}


def test_make_run_refuses_a_section_no_stage_reads_before_dvc_runs(project_copy):
    lock = (project_copy / "dvc.lock").read_bytes()

    def misspelt(params):
        params["trian"] = {"linear": {"lr": 0.1}}
        params["train"]["linear"]["lr"] = 0.1  # a change `dvc repro` would run
    edit_params(project_copy, misspelt)
    result = run(project_copy, "make", "--no-print-directory", f"VENV={VENV}", "run", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "trian = {" in output and "no stage reads it (did you mean 'train'?)" in output, output
    assert stages_run(output) <= {"params"} and (project_copy / "dvc.lock").read_bytes() == lock


def test_make_run_downloads_from_the_shared_data_folder_beside_the_project(reproduced, data_server, tmp_path):
    """With ../shared/data/fashion-mnist beside the project (as developers and CI have it), the
    Makefile points FASHION_MNIST_SOURCE at it: the download needs no other source."""
    import urllib.request

    url, files = data_server
    shared = tmp_path / "shared/data/fashion-mnist"
    shared.mkdir(parents=True)
    for name in files:
        with urllib.request.urlopen(f"{url}{name}.gz") as response:
            (shared / f"{name}.gz").write_bytes(response.read())
    project = copy_of(reproduced[0], tmp_path / "project")
    edit_params(project, lambda params: params["datasets"]["fashion-mnist"].update(
        sources=["file:///nonexistent/fashion-mnist/"]))
    assert not any(key.startswith("FASHION_MNIST") for key in environment())
    output = make(project, "run", env=environment())
    assert stages_run(output) == {"params", "download@fashion-mnist"}, output  # the same files: nothing after it re-runs
    assert "skipped a source" not in output, output
