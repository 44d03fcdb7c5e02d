"""The one MLflow run of a model stage: started, fed each epoch, given the model, then ended.

`ModelRun.start` opens the store and the dataset's experiment, marks this model's orphaned runs
(`open_for`), and starts a run named and tagged as `naming` and `stage_tags` say, with the
stage's params and its datasets (each split of the dataset folder, with the data's digest).
`log_epoch` records each epoch's metrics; `finish` logs the model (`served`), links the last
epoch's metrics to it and its datasets, attaches the evaluation files and registers the model
(`naming.registered_name`). A sweep's runs (`sweep.py`) are opened, tagged, ended and given
their model by the same functions.
"""

import os
import socket
import time
import warnings
from pathlib import Path

import mlflow

from regression import numerics, stage
from regression.headline import split_of
from regression.tracking.access import account, require_recording
from regression.tracking.naming import (
    CHANGED_TAG,
    COMMIT_TAG,
    DIGEST_TAG,
    EXPERIMENT_TAG,
    HOST_TAG,
    MODEL_DIGEST_TAG,
    MODEL_TAG,
    NOTE_TAG,
    PID_TAG,
    RUN_NAME_TAG,
    STAGE_TAG,
    STATUS_REASON_TAG,
    changed_params,
    committed_params,
    description,
    file_digest,
    git,
    registered_name,
    run_name,
    runs_of,
)
from regression.tracking.store import TrackingError, one_line, open_experiment, tracking_uri

# The logged model's code (models-from-code), logged with the whole `regression` package beside it.
SERVING_CODE = Path(__file__).with_name("logged_model.py")
PACKAGE = Path(__file__).parents[1]

MODEL_PACKAGES = ("torch", "numpy", "pandas")  # what the logged model imports, besides mlflow


def model_requirements() -> list[str]:
    """What the logged model needs installed: the versions it was logged with."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in MODEL_PACKAGES]


def spare_mlflow_package_scan() -> None:
    """Spare `log_model` its scan of every installed file (0.9 s of a stage's 1.1 s of model logging).

    Before it logs a model, MLflow maps every module of the environment to its package, only to
    warn when a requirement is not installed. `model_requirements` pins them from this very
    environment, so there is nothing to warn about, and MLflow has no setting to skip it: fill
    its cache with the packages the requirements name. Where a newer MLflow keeps no such cache,
    this does nothing and the scan runs as before.
    """
    from mlflow.utils import requirements_utils

    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", ()) is None:
        requirements_utils._MODULES_TO_PACKAGES = {p: [p] for p in (*MODEL_PACKAGES, "mlflow")}


def mark_orphaned_runs(client, experiment: str, model: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `model` whose process on this host is gone (e.g. `kill -9`)."""
    import psutil

    host = socket.gethostname()
    marked = []
    for run in runs_of(client, [experiment], model, status="RUNNING"):
        tags = run.data.tags
        if tags.get(HOST_TAG) != host or not tags.get(PID_TAG, "").isdigit():
            continue
        pid, started = int(tags[PID_TAG]), run.info.start_time / 1000
        try:  # the same pid alive since before the run started is the run's own process
            alive = psutil.Process(pid).create_time() <= started + 1
        except psutil.Error:
            alive = False
        if not alive:
            client.set_tag(run.info.run_id, STATUS_REASON_TAG,
                           f"orphaned: process {pid} on {host} ended without ending the run; "
                           f"marked KILLED when {tags.get(STAGE_TAG, model)} next started")
            client.set_terminated(run.info.run_id, "KILLED")
            marked.append(run.info.run_id)
    return marked


def open_for(model: str, experiment_key: str):
    """Open the store and an experiment (`naming.experiment_name`), check the account may record
    there, and mark `model`'s orphaned runs there: (client, experiment id), for a model stage
    (train or sweep) to start its runs in."""
    experiment = open_experiment(experiment_key)
    require_recording(experiment, experiment_key)
    client = mlflow.MlflowClient()
    for run_id in mark_orphaned_runs(client, experiment, model):
        print(f"marked MLflow run {run_id} KILLED: its process had ended without ending it")
    return client, experiment


def stage_tags(model: str, stage_name: str, data: dict) -> dict[str, str]:
    """The tags of a model stage's run: the model, the DVC stage, the data's digest, the process
    (for `mark_orphaned_runs`), the git commit and DVC experiment if any, the numerics."""
    commit, exp_name = git("rev-parse", "HEAD"), os.environ.get("DVC_EXP_NAME")
    tags = {MODEL_TAG: model, STAGE_TAG: os.environ.get("DVC_STAGE", stage_name), DIGEST_TAG: data["digest"],
            HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())} | numerics.describe()
    tags["mlflow.user"] = account()  # MLflow makes it the run's user_id
    tags |= {COMMIT_TAG: commit} if commit else {}
    tags |= {EXPERIMENT_TAG: exp_name} if exp_name else {}
    return tags


def provenance(tags: dict) -> dict[str, str]:
    """The git commit and DVC experiment among a run's tags: its model version carries them too."""
    return {key: tags[key] for key in (EXPERIMENT_TAG, COMMIT_TAG) if key in tags}


def drop_process_tags(client, run_id: str) -> None:
    """The process tags only find runs left RUNNING by a dead process (`mark_orphaned_runs`); on
    an ended run they would be noise in the UI's comparison of runs."""
    for key in (HOST_TAG, PID_TAG):
        client.delete_tag(run_id, key)


def log_served_model(model, config, model_file: Path, example, **log):
    """Log the model to the active run as MLflow serves it (`served`, models-from-code with this
    package beside it, pinned requirements), `example` its input example; `log` as log_model's.
    Its ModelInfo."""
    from regression.tracking.served import MODEL_ARTIFACT, signature

    spare_mlflow_package_scan()
    with warnings.catch_warnings():  # MLflow suggests type hints where a signature is given
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.pyfunc.log_model(
            name=config.name, python_model=str(SERVING_CODE), artifacts={MODEL_ARTIFACT: str(model_file)},
            code_paths=[str(PACKAGE)], signature=signature(model, config, example), input_example=example,
            pip_requirements=model_requirements(), **log)


class ModelRun:
    """The MLflow run of one model stage, from `start` to the end of its `with` block.

    The block's outcome sets the status: FINISHED, FAILED on an error, KILLED on SIGTERM or
    SIGINT. An MLflow error inside it becomes one line naming the run and the store.
    """

    def __init__(self, run_id: str, name: str, tags: dict, epochs: int, data: dict, datasets: dict):
        self.run_id, self.name, self.tags, self.epochs, self.data = run_id, name, tags, epochs, data
        self.datasets = datasets  # {split: MLflow dataset}
        self.last_record: dict = {}
        self.forget_on_interrupt = lambda: None  # set by `start`

    @classmethod
    def start(cls, model: str, params: dict, data: dict, epochs: int, file_params: dict,
              folder: Path | None = None, splits: tuple[str, ...] = ()) -> "ModelRun":
        """Open the store, mark this model's orphaned runs, start a run and log params and datasets.

        `params` are the stage's params (flat), `data` the dataset's meta (name, digest),
        `file_params` the whole params.yaml as the stage read it (the run's name says what differs
        from the committed one), `folder` the dataset folder and `splits` the splits the model
        learns from and is scored on.
        """
        datasets = {split: split_dataset(data["name"], split, data["digest"], folder) for split in splits}
        client, experiment = open_for(model, data["name"])
        changed = changed_params(file_params, committed_params(), model)
        tags = stage_tags(model, f"train@{model}", data)
        tags[CHANGED_TAG] = " ".join(f"{k}={v}" for k, v in changed.items())
        name = run_name(model, changed, tags.get(EXPERIMENT_TAG), tags.get(COMMIT_TAG))
        run_id = client.create_run(experiment, run_name=name, tags=tags | {
            NOTE_TAG: description(model, params, changed, tags, data)}).info.run_id
        run = cls(run_id, name, tags, epochs, data, datasets)
        run.forget_on_interrupt = stage.on_interrupt(lambda: run.end("KILLED"))
        try:
            mlflow.start_run(run_id=run_id)  # the active run, which log_model logs to
            mlflow.log_params(params)
            log_datasets(datasets)
        except BaseException as error:
            run.__exit__(type(error), error, error.__traceback__)
            raise
        return run

    def __enter__(self) -> "ModelRun":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, stage.Interrupted) else "FAILED"
        self.end(status)
        self.raise_tracking_error(error)

    def end(self, status: str) -> None:
        self.forget_on_interrupt()
        try:
            mlflow.end_run(status)
            drop_process_tags(mlflow.MlflowClient(), self.run_id)
        except Exception:  # the store is gone: the next start of this stage marks the run
            pass
        print(f"MLflow run {self.run_id} {status}: {self.name}")

    def raise_tracking_error(self, error: BaseException | None) -> None:
        from mlflow.exceptions import MlflowException

        if isinstance(error, MlflowException):
            raise TrackingError(f"MLflow run {self.run_id} in {tracking_uri()}: {one_line(error)}") from None

    def log_epoch(self, record: dict) -> None:
        """Per-epoch metrics, step = epoch. The last epoch's wait to be linked to the model."""
        if record["epoch"] == self.epochs:
            self.last_record = record
            return
        mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])

    def finish(self, model, config, model_path: Path, example, files: list[Path], metrics: dict):
        """Log the model (answering as `served` says, `example` its input example), the last epoch's
        metrics linked to it (by split, with its dataset) and the evaluation `files`; register it as
        a new version of `<dataset>-<model>`, tagged with the headline `metrics`. That version."""
        mlflow.set_tag(MODEL_DIGEST_TAG, file_digest(model_path))  # what `run_of_outputs` finds it by
        info = log_served_model(model, config, model_path, example, step=self.epochs)
        for split, dataset in self.datasets.items():
            scores = {k: v for k, v in self.last_record.items() if split_of(k) == split}
            if scores:
                mlflow.log_metrics(scores, step=self.epochs, model_id=info.model_id, dataset=dataset)
        for path in files:
            mlflow.log_artifact(str(path), "evaluation")
        return mlflow.register_model(info.model_uri, registered_name(self.data["name"], config.name), tags={
            RUN_NAME_TAG: self.name, DIGEST_TAG: self.data["digest"],
            **provenance(self.tags),
            **{key: f"{value:.6g}" for key, value in metrics.items()}})


def log_datasets(datasets: dict, attempts: int = 4) -> None:
    """Log the active run's datasets ({split: dataset}), again if another run got there first.

    MLflow looks a dataset up and inserts it if missing; two runs of one experiment logging the
    same dataset at the same moment (a sweep's workers) both insert it, and the loser's request
    fails on the table's unique key. Tried again, it finds the row and links it.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            mlflow.log_inputs(list(datasets.values()), contexts=list(datasets), tags_list=[None] * len(datasets))
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def split_dataset(name: str, split: str, digest: str, folder: Path):
    """An MLflow dataset for one split of a dataset folder (source: the folder, digest: its content)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(folder.resolve().as_uri())
    return MetaDataset(source=source, name=f"{name}-{split}", digest=digest)
