"""MLflow: the tracking store, and the one run a model stage records from start to finish.

The store is `MLFLOW_TRACKING_URI` if set (e.g. an `mlflow server` over HTTP), else
`mlflow.db` (sqlite) at the project root with artifacts in `mlartifacts/` beside it, both by
absolute path: `dvc exp run --temp/--queue` runs in a copy under `<root>/.dvc/tmp/exps/`, and
its runs land in the same store. An sqlite store is created and migrated under a file lock, so
parallel stages (queued experiments on several workers) never race to set it up. A server is
asked for its health before any work, and every HTTP request is bounded (see `HTTP_BOUNDS`),
so a missing or dying server fails a stage in seconds, not minutes.

A run is named after its model and what makes it different (`run_name`), ties itself to DVC
and git with tags, and records params, per-epoch metrics, the datasets, figures, the
evaluation and the model, which is registered as a new version of `<dataset>-<model>`.
"""

import logging
import os
import socket
import subprocess
import time
import urllib.request
import warnings
from pathlib import Path

from regression import PipelineError, stage
from regression.params import parse_yaml, read_yaml

DEFAULT_EXPERIMENT = "regression-lesson"


def lesson_view() -> dict[str, str]:
    """The lesson's saved view of the run list in MLflow's UI, as the experiment tag holding it.

    Which columns the run list shows, and its sort, live in the UI, not in the tracking API; a
    saved view ships them with the store. MLflow's UI keeps one as the tag
    `mlflow.sharedViewState.<key>`: a JSON envelope {name, createdAt, state} whose state is the
    UI's persisted state as a JSON string, naming columns as the UI does (params.`lr`,
    metrics.`test_accuracy`). The view is listed under "Views" above the run list;
    `regression.ui.run_list_url` links to it. val_accuracy shows only with a validation split.
    """
    import json

    params = [f"params.`{key}`" for key in ("lr", "epochs", "batch_size", "seed")]
    metrics = [f"metrics.`{key}`" for key in ("val_accuracy", "test_accuracy", "test_loss", "train_loss")]
    run_name = "attributes.`Run Name`"
    state = {"selectedColumns": params + metrics,
             "orderByKey": "metrics.`test_accuracy`", "orderByAsc": False,  # every run has test_accuracy
             # the run name, the UI's created and duration columns, the params, the metrics; names
             # and metrics wider than the UI's default (else cut short), params narrower
             "columnOrder": [run_name, "runDateAndNestInfo", "duration", *params, *metrics],
             "columnWidths": {run_name: 260} | dict.fromkeys(params, 90) | dict.fromkeys(metrics, 120)}
    envelope = {"name": "Lesson: key params and metrics, best test accuracy first",
                "createdAt": 1_795_996_800_000,  # 2026-11-30 in ms: fixed, so every store gets the same tag
                "state": json.dumps(state)}
    return {"mlflow.sharedViewState.lesson": json.dumps(envelope)}


# The UI's model-training view, and the lesson's saved view (set only where missing: see experiment_id).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"} | lesson_view()
# MLflow reads these per request; unset, a dead server costs minutes of retries.
HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "8"}
STORE_LOCK_SECONDS = 120
MODEL_TAG, STAGE_TAG, EXPERIMENT_TAG, DIGEST_TAG = "model", "dvc.stage", "dvc.experiment", "data.digest"
COMMIT_TAG = "mlflow.source.git.commit"
HOST_TAG, PID_TAG = "process.host", "process.pid"


# The logged model's code (models-from-code), logged with this package beside it.
SERVING_CODE = Path(__file__).with_name("logged_model.py")


class TrackingError(PipelineError):
    """The tracking store cannot be reached, opened or written."""


def project_root(cwd: Path | None = None) -> Path:
    """The project root, also from inside a `dvc exp run --temp/--queue` copy of it."""
    cwd = (cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def open_experiment() -> str:
    """Point MLflow at the store (set up once, checked reachable) and the experiment; its id."""
    for key, value in HTTP_BOUNDS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines say what we print ourselves

    mlflow.set_tracking_uri(uri)
    database = sqlite_path(uri)
    if database is None:
        return experiment_id(uri)
    from filelock import FileLock, Timeout

    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(f"{database}.lock", timeout=STORE_LOCK_SECONDS):
            return experiment_id(uri)
    except Timeout:
        raise TrackingError(f"{database}: another process has held {database}.lock for "
                            f"{STORE_LOCK_SECONDS} s; if none is running, delete the lock file") from None


def experiment_id(uri: str) -> str:
    """The id of the experiment (created if missing), with the tags the UI needs.

    EXPERIMENT_TAGS are set where they differ (the UI may guess another kind), but a saved view
    only where missing: a view the user has overridden in the UI stays as they left it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    database = sqlite_path(uri)
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            # An sqlite store keeps artifacts beside its file; a server decides for itself.
            location = (database.resolve().parent / "mlartifacts").as_uri() if database else None
            try:
                experiment = mlflow.get_experiment(mlflow.create_experiment(name, location, EXPERIMENT_TAGS))
            except MlflowException:  # on a server, a stage on another worker may create it first
                experiment = mlflow.get_experiment_by_name(name)
                if experiment is None:
                    raise
        to_set = {key: value for key, value in EXPERIMENT_TAGS.items() if experiment.tags.get(key) != value
                  and not (key.startswith("mlflow.sharedViewState.") and key in experiment.tags)}
        for key, value in to_set.items():
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    except (MlflowException, SQLAlchemyError) as error:
        if database is None:
            raise TrackingError(f"MLflow tracking server {uri}: {one_line(error)}") from None
        raise TrackingError(
            f"{database}: not a usable MLflow store ({one_line(error)}). Move it aside "
            f"(mv {database} {database}.broken) and run again: its runs are lost, the pipeline's "
            "outputs are not") from None


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, naming the server, when nothing healthy answers at `uri`."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            response.read()
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"MLflow tracking server {uri} does not answer ({reason}): start it (`make server`) or "
            f"unset MLFLOW_TRACKING_URI to record into {project_root() / 'mlflow.db'}") from None


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


def one_line(error: BaseException) -> str:
    """The first line of an error's message, without SQLAlchemy's background link."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def committed_params() -> dict:
    """params.yaml as committed at the experiment's baseline (or HEAD), {} if unknown."""
    revision = os.environ.get("DVC_EXP_BASELINE_REV") or "HEAD"
    text = git("show", f"{revision}:params.yaml")
    if text is None:
        return {}
    try:
        return parse_yaml(text) or {}
    except Exception:  # an unreadable committed file only costs the run name its detail
        return {}


def changed_params(current: dict, committed: dict, model: str) -> dict[str, object]:
    """Params that differ from the committed params.yaml and matter to `model`'s stage.

    Keys of `train.<model>` are named as is (`lr`); keys of other sections in full, after them
    (`prepare.validation_size`). Other models' params do not matter to this run. With no
    committed params.yaml to compare with (not a git repo), nothing counts as changed.
    """
    if not committed:
        return {}
    now, before = flat(current), flat(committed)
    own = f"train.{model}."
    changed = {key: value for key, value in now.items() if before.get(key, object()) != value}
    return ({key.removeprefix(own): value for key, value in changed.items() if key.startswith(own)}
            | {key: value for key, value in changed.items() if not key.startswith("train.")})


def flat(tree, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}


def run_name(model: str, changed: dict, experiment: str | None, commit: str | None) -> str:
    """'softmax_nn lr=0.1 · glare-dhow' in a DVC experiment, 'softmax_nn @ 7d9c8f2' outside one."""
    name = " ".join([model] + [f"{key}={value}" for key, value in changed.items()])
    if experiment:
        return f"{name} · {experiment}"
    return f"{name} @ {commit[:7]}" if commit else name


def description(model: str, params: dict, changed: dict, tags: dict, data: dict) -> str:
    """The run's description (Markdown): its params and where it came from."""
    lines = [f"**{model}**, trained and evaluated by the DVC stage `{tags[STAGE_TAG]}`.", ""]
    if tags.get(EXPERIMENT_TAG):
        lines.append(f"- DVC experiment: `{tags[EXPERIMENT_TAG]}`")
    lines.append(f"- git commit: `{tags.get(COMMIT_TAG, 'unknown')}`")
    lines.append("- changed from the committed params.yaml: "
                 + (", ".join(f"`{k}={v}`" for k, v in changed.items()) or "nothing"))
    lines.append(f"- data: `{data['name']}`, digest `{data['digest']}`")
    lines += ["", "| param | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in params.items()]
    return "\n".join(lines)


def mark_orphaned_runs(client, experiment: str, model: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `model` whose process on this host is gone (e.g. `kill -9`)."""
    import psutil

    host = socket.gethostname()
    marked = []
    runs = client.search_runs([experiment], f"tags.{MODEL_TAG} = '{model}' and attributes.status = 'RUNNING'")
    for run in runs:
        tags = run.data.tags
        if tags.get(HOST_TAG) != host or not tags.get(PID_TAG, "").isdigit():
            continue
        pid, started = int(tags[PID_TAG]), run.info.start_time / 1000
        try:  # the same pid alive since before the run started is the run's own process
            alive = psutil.Process(pid).create_time() <= started + 1
        except psutil.Error:
            alive = False
        if not alive:
            client.set_tag(run.info.run_id, "mlflow.runStatusReason",
                           f"orphaned: process {pid} on {host} ended without ending the run; "
                           f"marked KILLED when {tags.get(STAGE_TAG, model)} next started")
            client.set_terminated(run.info.run_id, "KILLED")
            marked.append(run.info.run_id)
    return marked


class ModelRun:
    """The MLflow run of one model stage, from `start` to the end of its `with` block.

    The block's outcome sets the status: FINISHED, FAILED on an error, KILLED on SIGTERM or
    SIGINT. An MLflow error inside it becomes one line naming the run and the store.
    """

    def __init__(self, run_id: str, name: str, tags: dict, epochs: int, data: dict):
        self.run_id, self.name, self.tags, self.epochs, self.data = run_id, name, tags, epochs, data
        self.last_record: dict = {}
        self.forget_on_interrupt = lambda: None  # set by `start`

    @classmethod
    def start(cls, model: str, params: dict, data: dict, epochs: int) -> "ModelRun":
        """Open the store, mark this model's orphaned runs, start a run and log params and datasets.

        `params` are the stage's params (flat), `data` the dataset's meta (name, digest) with the
        MLflow dataset of each split under `datasets`.
        """
        import mlflow

        experiment = open_experiment()
        client = mlflow.MlflowClient()
        for run_id in mark_orphaned_runs(client, experiment, model):
            print(f"marked MLflow run {run_id} KILLED: its process had ended without ending it")
        exp_name, commit = os.environ.get("DVC_EXP_NAME"), git("rev-parse", "HEAD")
        changed = changed_params(read_yaml("params.yaml"), committed_params(), model)
        tags = {MODEL_TAG: model, STAGE_TAG: os.environ.get("DVC_STAGE", f"train@{model}"),
                DIGEST_TAG: data["digest"], HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
                "dvc.changed_params": " ".join(f"{k}={v}" for k, v in changed.items())}
        tags |= {COMMIT_TAG: commit} if commit else {}
        tags |= {EXPERIMENT_TAG: exp_name} if exp_name else {}
        name = run_name(model, changed, exp_name, commit)
        run_id = client.create_run(experiment, run_name=name, tags=tags | {
            "mlflow.note.content": description(model, params, changed, tags, data)}).info.run_id
        run = cls(run_id, name, tags, epochs, data)
        run.forget_on_interrupt = stage.on_interrupt(lambda: run.end("KILLED"))
        try:
            mlflow.start_run(run_id=run_id)  # the active run, which log_model logs to
            mlflow.log_params(params)
            log_datasets(data["datasets"])
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
        import mlflow

        self.forget_on_interrupt()
        try:
            mlflow.end_run(status)
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
        import mlflow

        mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])

    def finish(self, model_name: str, model_path: Path, signature, input_example,
               files: list[Path], register_as: str, version_tags: dict) -> str:
        """Log the model, the last epoch's metrics linked to it (by split, with its dataset), the
        evaluation files; register the model as a new version of `register_as`. Returns the version."""
        import mlflow

        spare_mlflow_package_scan()
        with warnings.catch_warnings():  # MLflow suggests type hints where a signature is given
            warnings.simplefilter("ignore", UserWarning)
            info = mlflow.pyfunc.log_model(
                name=model_name, python_model=str(SERVING_CODE), artifacts={"model": str(model_path)},
                code_paths=[str(SERVING_CODE.parent)], signature=signature, input_example=input_example,
                pip_requirements=model_requirements(), step=self.epochs)
        for split, dataset in self.data["datasets"].items():
            metrics = {k: v for k, v in self.last_record.items() if k.startswith(f"{split}_")}
            if metrics:
                mlflow.log_metrics(metrics, step=self.epochs, model_id=info.model_id, dataset=dataset)
        for path in files:
            mlflow.log_artifact(str(path), "evaluation")
        version = mlflow.register_model(info.model_uri, register_as, tags={
            "run_name": self.name, DIGEST_TAG: self.data["digest"],
            **{key: self.tags[key] for key in (EXPERIMENT_TAG, COMMIT_TAG) if key in self.tags},
            **{key: f"{value:.6g}" for key, value in version_tags.items()}})
        return version.version


def log_datasets(datasets: dict, attempts: int = 4) -> None:
    """Log the active run's datasets ({split: dataset}), again if another run got there first.

    MLflow looks a dataset up and inserts it if missing; two runs of one experiment logging the
    same dataset at the same moment (a sweep's workers) both insert it, and the loser's request
    fails on the table's unique key. Tried again, it finds the row and links it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            mlflow.log_inputs(list(datasets.values()), contexts=list(datasets), tags_list=[None] * len(datasets))
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def dataset(name: str, split: str, digest: str, folder: Path):
    """An MLflow dataset for one split of a dataset folder (source: the folder, digest: its content)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(folder.resolve().as_uri())
    return MetaDataset(source=source, name=f"{name}-{split}", digest=digest)
