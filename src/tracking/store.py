"""The tracking store: where it is, and opening it with its experiments (MLflow imported here).

The store is `MLFLOW_TRACKING_URI` if set (e.g. an `mlflow server`), else `mlflow.db` (sqlite) at
the project root, artifacts in `mlartifacts/` beside it, by absolute path: runs of `dvc exp run
--temp/--queue` (in a copy under `<root>/.dvc/tmp/exps/`) land there too. An sqlite store is set up
under a file lock (parallel stages never race); HTTP requests are bounded (`HTTP_BOUNDS`). Each
dataset's runs, and its sweeps', have an experiment with the lesson's saved view (`lesson_view`).
"""

import json
import logging
import os
import sys
import time
from pathlib import Path

from regression.data import classifies
from regression.headline import HEADLINE, LOSS, TRAIN, has, metric, ranked_by
from regression.params import read_yaml
from regression.params_schema import SEARCH_KEYS
from tracking.access import TrackingError, check_server, is_server, one_line, refusal
from tracking.naming import dataset_of, experiment_keys, experiment_name

# MLflow reads these per request; unset, a dead server costs minutes of retries.
HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "8"}
STORE_LOCK_SECONDS = 120
DEFAULT_EXPERIMENT = "0"  # MLflow's "Default"
OLD_PREFIX = "regression-lesson/"  # the experiments' names before they were the datasets' own
STORE_BUSY_SECONDS = 120  # waited for an sqlite store another process holds, beyond MLflow's 20 s
SHARED_VIEW = "mlflow.sharedViewState."  # the UI's tag prefix for saved views
VIEW_KEY = "lesson"
VIEW_TAG = SHARED_VIEW + VIEW_KEY  # the experiment tag holding the lesson's saved view
NEWEST_FIRST = "attributes.start_time"  # the UI's sort by "Created"


def lesson_view(classifies: bool, sweeps: bool = False) -> dict[str, str]:
    """The lesson's saved view of the run list for classifiers' runs or regressors' (or sweeps'), as the experiment
    tag MLflow's UI keeps one in (`mlflow.sharedViewState.<key>`: {name, createdAt, state}, the state
    the UI's own JSON): the searched params and the seed, the headline metrics, best first; a sweeps
    experiment's newest sweep first, its trials nested under it. Listed under "Views" in the UI.
    """
    order_by = ranked_by(classifies)
    params = [f"params.`{key}`" for key in (*SEARCH_KEYS, "seed")]
    metrics = [f"metrics.`{key}`" for key in (*HEADLINE, metric(TRAIN, LOSS)) if has(key, classifies)]
    run_name = "attributes.`Run Name`"
    # The UI nests a sweep's trials under it only in order of start: newest sweep first.
    order = ({"orderByKey": NEWEST_FIRST, "orderByAsc": False} if sweeps
             else {"orderByKey": f"metrics.`{order_by}`", "orderByAsc": HEADLINE[order_by] < 0})
    state = {"selectedColumns": params + metrics, **order,
             # the run name, the UI's created and duration columns, the params, the metrics; each
             # as wide as its name (else cut short)
             "columnOrder": [run_name, "runDateAndNestInfo", "duration", *params, *metrics],
             "columnWidths": {run_name: 240} | {column: max(70, 8 * len(column.split("`")[1]) + 30)
                                                for column in params + metrics}}
    best = "best test accuracy first" if classifies else "lowest test loss first"
    title = "Sweeps: trials under their sweep" if sweeps else f"Lesson: {best}"
    envelope = {"name": title,
                "createdAt": 1_795_996_800_000,  # 2026-11-30 in ms: fixed, so every store gets the same tag
                "state": json.dumps(state)}
    return {VIEW_TAG: json.dumps(envelope)}


def experiment_tags(key: str) -> dict[str, str]:
    """An experiment's tags: the UI's model-training kind and the lesson's saved view for its task
    (one experiment for every dataset, MLFLOW_EXPERIMENT_NAME, gets the classifiers')."""
    one_for_all = bool(os.environ.get("MLFLOW_EXPERIMENT_NAME"))
    sweeps = key != dataset_of(key) and not one_for_all
    return {"mlflow.experimentKind": "custom_model_development"} | lesson_view(
        one_for_all or classifies(dataset_of(key)), sweeps)


def project_root(cwd: Path | None = None) -> Path:
    """The project root, also from inside a `dvc exp run --temp/--queue` copy of it."""
    cwd = (cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def local_store_uri() -> str:
    """The project's own store: `mlflow.db` at its root."""
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri()


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def open_experiment(key: str) -> str:
    """Point MLflow at the store (set up once, checked reachable) and an experiment (a dataset's,
    or its sweeps': `naming.experiment_name`); its id."""
    return open_experiments([key])[key]


def open_experiments(keys) -> dict[str, str]:
    """Point MLflow at the store (set up once, checked reachable); {experiment key: its experiment's id}."""
    for key, value in HTTP_BOUNDS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri()
    if is_server(uri):
        check_server(uri)
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines say what we print ourselves
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # a store error: said in one line

    mlflow.set_tracking_uri(uri)
    database = sqlite_path(uri)
    if database is None:
        return {key: experiment_id(uri, key) for key in keys}
    from filelock import FileLock, Timeout

    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(f"{database}.lock", timeout=STORE_LOCK_SECONDS):
            ids = {key: while_busy(database, lambda key=key: experiment_id(uri, key)) for key in keys}
            keep_planner_statistics(database)
            return ids
    except Timeout:
        raise TrackingError(f"{database}: another process has held {database}.lock for "
                            f"{STORE_LOCK_SECONDS} s; if none is running, delete the lock file") from None


class StoreBusy(TrackingError):
    """An sqlite store another process holds locked."""


def while_busy(database: Path, attempt):
    """`attempt()`, tried again while the store is locked by another process, for STORE_BUSY_SECONDS at most."""
    seconds = STORE_BUSY_SECONDS
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except StoreBusy:
            if time.monotonic() > deadline:
                raise TrackingError(f"{database}: busy: another process has held it locked for over "
                                    f"{seconds:.0f} s ({holders(database)}); let it finish or stop it, then run "
                                    "again (the store is not damaged)") from None
            time.sleep(1)


def holders(database: Path) -> str:
    """The other processes that have `database` open, as 'pid 12: <command>', from /proc."""
    found, target = [], str(database.resolve())
    for fd_folder in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fd_folder.parent.name)
        try:
            if pid != os.getpid() and any(os.readlink(fd) == target for fd in fd_folder.iterdir()):
                command = (fd_folder.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                found.append(f"pid {pid}: {command[:60]}")
        except OSError:  # gone, or not ours to look at
            continue
    return "; ".join(found) or "no process of this user has it open now"


def keep_planner_statistics(database: Path) -> None:
    """Measure an sqlite store's tables for its query planner again once its runs have doubled (ANALYZE).

    Without statistics sqlite plans MLflow's search ranked by a metric (`make compare`, the UI's run
    list) as a scan of every run's metrics: far slower at 10,000 runs (benchmarks/store.py times it).
    """
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(database, timeout=20)) as connection, \
            contextlib.suppress(sqlite3.OperationalError):  # busy: measured another time
        runs = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
        measured = connection.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'runs'").fetchone() if \
            connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone() else None
        if runs and runs >= 2 * (int(measured[0].split()[0]) if measured else 0):
            connection.execute("ANALYZE")
            connection.commit()


def drop_empty_default() -> None:
    """Delete a local store's "Default" experiment while it holds no run: an empty one in the UI's list."""
    import mlflow

    default = mlflow.get_experiment(DEFAULT_EXPERIMENT)
    if default.lifecycle_stage == "active" and not mlflow.search_runs([DEFAULT_EXPERIMENT], max_results=1,
                                                                        output_format="list"):
        mlflow.delete_experiment(DEFAULT_EXPERIMENT)


def opened() -> dict[str, str] | None:
    """For the commands: {experiment key: experiment id} for the experiments params.yaml's stages
    record into (each model's dataset, each swept model's dataset's sweeps), or None once the
    reason has been printed as `error:`."""
    try:
        return open_experiments(experiment_keys(read_yaml("params.yaml")))
    except TrackingError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def experiment_id(uri: str, key: str) -> str:
    """The id of an experiment (a dataset's, or its sweeps'; created if missing), with the tags the UI needs.

    Its `experiment_tags` are set where they differ (the UI may guess another kind), but a saved
    view only where missing: a view the user has overridden in the UI stays as they left it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    name, tags = experiment_name(key), experiment_tags(key)
    database = sqlite_path(uri)
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None and (older := mlflow.get_experiment_by_name(f"{OLD_PREFIX}{name}")):
            mlflow.MlflowClient().rename_experiment(older.experiment_id, name)  # a store from before the short names
            experiment = mlflow.get_experiment(older.experiment_id)
        if experiment is None:
            if database is not None:
                drop_empty_default()
            # An sqlite store keeps artifacts beside its file; a server decides for itself.
            location = (database.resolve().parent / "mlartifacts").as_uri() if database else None
            try:
                experiment = mlflow.get_experiment(mlflow.create_experiment(name, location, tags))
            except MlflowException:  # on a server, a stage on another worker may create it first
                experiment = mlflow.get_experiment_by_name(name)
                if experiment is None:
                    raise
        to_set = {key: value for key, value in tags.items() if experiment.tags.get(key) != value
                  and not (key.startswith(SHARED_VIEW) and key in experiment.tags)}
        for key, value in to_set.items():
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    except (MlflowException, SQLAlchemyError) as error:
        if database is None:
            raise TrackingError(f"MLflow tracking server {uri}: {refusal(error)}") from None
        if "database is locked" in one_line(error):
            raise StoreBusy(one_line(error)) from None
        raise TrackingError(
            f"{database}: not a usable MLflow store ({one_line(error)}). Move it aside "
            f"(mv {database} {database}.broken) and run again: its runs are lost, the pipeline's "
            "outputs are not") from None
