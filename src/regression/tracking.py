"""MLflow: where runs go, what each train run records, and how evaluate finds it again.

The default store is `mlflow.db` (sqlite) at the project root, with artifacts in
`mlartifacts/` beside it, both by absolute path. `dvc exp run --temp/--queue` runs in a copy
under `<root>/.dvc/tmp/exps/`, so the root is taken from above that folder: those runs land in
the same store. `MLFLOW_TRACKING_URI` (e.g. an `mlflow server` over HTTP) overrides it, and
`MLFLOW_EXPERIMENT_NAME` the experiment.

The evaluate stage finds its train run by the sha256 of the model file it evaluates, a DVC
output: the run id itself is never written to a DVC output, since it differs on every run and
would make two identical `dvc repro` runs record different output hashes.
"""

import os
import subprocess
import warnings
from pathlib import Path

import mlflow
import torch
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from regression import PipelineError

DEFAULT_EXPERIMENT = "regression-lesson"
MODEL_HASH_TAG = "model.sha256"
STAGE_TAG = "dvc.stage"


class RunNotFound(PipelineError):
    """No MLflow run was recorded for the model file being evaluated."""


def project_root(cwd: Path | None = None) -> Path:
    """The project root, also from inside a `dvc exp run --temp/--queue` copy of it."""
    cwd = (cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def configure() -> str:
    """Point MLflow at the tracking store and experiment; return the experiment id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    root = project_root()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # An sqlite store keeps artifacts beside its file (by absolute path); a server decides itself.
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # another stage (a parallel queued experiment) created it first
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_tags(model: str, data_digest: str) -> dict:
    """Tags that tie a run to its DVC stage, git commit, experiment and data."""
    tags = {
        "model": model,
        STAGE_TAG: os.environ.get("DVC_STAGE", f"train@{model}"),
        "mlflow.source.git.commit": git_commit(),
        "data.digest": data_digest,
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


def log_dataset(folder: Path, name: str, digest: str) -> None:
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(folder.resolve().as_uri())
    mlflow.log_input(MetaDataset(source=source, name=name, digest=digest), context="training")


def log_history(record: dict) -> None:
    mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])


def log_model(model: torch.nn.Module, example: torch.Tensor) -> None:
    """The model in MLflow's format (a torch.export program), loadable to predict."""
    example_np = example.numpy()
    with torch.no_grad():
        output = model(example).numpy()
    mlflow.pytorch.log_model(
        model,
        name="model",
        signature=infer_signature(example_np, output),
        input_example=example_np,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
    )


def find_train_run(experiment_id: str, stage: str, model_sha256: str) -> str:
    """The id of the latest train run that produced the model file with this sha256."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{STAGE_TAG}` = '{stage}' and tags.`{MODEL_HASH_TAG}` = '{model_sha256}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    if not runs:
        raise RunNotFound(
            f"{stage}: no MLflow run in {mlflow.get_tracking_uri()} recorded a model with "
            f"sha256 {model_sha256}; re-run training with `dvc repro -f {stage}`")
    return runs[0].info.run_id


def flat(values: dict | list, prefix: str = "") -> dict:
    """{'a': {'b': 1}, 'w': [2, 3]} -> {'a.b': 1, 'w.0': 2, 'w.1': 3}, for MLflow."""
    items = values.items() if isinstance(values, dict) else enumerate(values)
    out = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            out |= flat(value, f"{name}.")
        else:
            out[name] = value
    return out


