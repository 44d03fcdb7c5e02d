"""A model stage's MLflow record, written in one go once its training is done: the run, its model, its version.

A stage calls `check` before it trains (plain HTTP, no MLflow) and `record` once it is over: the run
(the training's times, tags, params, every epoch's metrics, datasets, model, a new version), then its
outputs published and the run ended together. A failure or signal before that ends the run FAILED or
KILLED, deletes its version, publishes nothing. A diverged training is a FAILED run with its history.
"""

import contextlib
import hashlib
import itertools
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from regression.files import signals_held
from regression.headline import split_of
from tracking.access import as_tracking_error, check_recording, one_line, shortfall
from tracking.naming import (COMMIT_TAG, DIGEST_TAG, EXPERIMENT_TAG, MODEL_DIGEST_TAG, PARENT_TAG, RUN_COLOUR_TAG,
                             RUN_NAME_TAG, STATUS_REASON_TAG, SWEEP_TAG, experiment_name, registered_name,
                             stage_run_tags)
from tracking.store import open_experiment, tracking_uri

SERVING_CODE = Path(__file__).with_name("logged_model.py")  # the code MLflow loads a logged model with
PACKAGES = [Path(__file__).parent, Path(__file__).parents[1] / "regression"]  # logged beside it
MODEL_PACKAGES = ("torch", "numpy", "pandas")  # what the logged model imports, besides mlflow
BATCH = 1000  # MLflow takes at most 1000 metrics per log_batch
# A run's colour in the UI's charts: each run takes the one after its experiment's newest run's,
# so the last ten runs of an experiment differ (Tableau 10: apart for most colour vision).
RUN_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
               "#9c755f", "#bab0ac")


def check(experiment_key: str) -> None:
    """Before any training: a server this stage records into answers and lets this account record."""
    check_recording(tracking_uri(), experiment_name(experiment_key))


@dataclass
class Trained:
    """What one run records: a stage's training (or a sweep's trial)."""
    params: dict
    history: list[dict]  # one record per epoch: {"epoch": n, "<split>_<score>": value, ...}
    started: float       # time.time() when training started and ended
    ended: float
    status: str = "FINISHED"  # FAILED: it diverged (`reason` says how)
    reason: str | None = None
    tags: dict = field(default_factory=dict)
    name: str | None = None  # the run's name; by default the model and the params changed


@dataclass
class Logged:
    """A trained model, logged with its run and registered as a new version."""
    network: object      # the torch module
    config: object       # its models.ModelConfig
    weights: bytes       # its model file's bytes
    example: object      # an input example (numpy rows)
    files: dict[str, dict[str, bytes]]  # artifact folder -> {file name: bytes}
    version_tags: dict[str, str]
    params: dict         # the logged model's own params (what it was trained with)
    crowned_by: str | None = None  # if given, `champion` goes to it (if this account may), chosen by this


def record(model: str, stage: str, experiment_key: str, data: dict, trained: Trained, logged: Logged | None = None,
           folder: Path | None = None, children: list[Trained] = (), file_params: dict | None = None,
           publish: Callable[[], None] = lambda: None):
    """Record `trained` as a run of `model`'s DVC `stage` (`data`: the dataset's meta, `folder` its folder),
    `children` under it, then `publish` the outputs; the registered version, if `logged`."""
    import mlflow
    from mlflow.entities import Param

    experiment = open_experiment(experiment_key)
    client = mlflow.MlflowClient()
    run_id = version = None
    published = False  # once the outputs are in place there is nothing to undo
    try:
        colours = colours_after(client, experiment)
        run_id = start(client, experiment, model, stage, data, trained, file_params or {}, next(colours))
        for child in children:
            child_id = start(client, experiment, model, stage, data, child, {}, next(colours), parent=run_id)
            log_history(client, child_id, child.history)
            client.set_terminated(child_id, child.status, end_time=int(child.ended * 1000))
        datasets = split_datasets(data, folder, trained.history) if folder else {}
        mlflow.start_run(run_id=run_id)  # the active run, which log_model logs to
        if datasets:
            log_datasets(datasets)
        model_id = None
        if logged is not None:
            client.set_tag(run_id, MODEL_DIGEST_TAG, hashlib.sha256(logged.weights).hexdigest())
            model_id, uri = log_model(logged, len(trained.history))
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in trained.params.items()])
        log_history(client, run_id, trained.history, model_id, datasets)
        if logged is not None:
            version = register(uri, registered_name(data["name"], logged.config.name), logged, trained, data)
        with signals_held():  # the commit point: the outputs and the run's end go together
            publish()
            published = True
            end(client, run_id, trained.status, trained)
    except BaseException as error:
        if published:  # a signal held over the commit point arrives now
            raise
        if version is not None:  # no version without its outputs
            with contextlib.suppress(Exception):  # the store is gone: the error below says so
                client.delete_model_version(version.name, version.version)
        if run_id is not None:
            end(client, run_id, "FAILED" if isinstance(error, Exception) else "KILLED", trained)
        raise as_tracking_error(error, run_id, tracking_uri()) from None
    if logged is not None and logged.crowned_by:
        crown_if_allowed(client, version, logged.crowned_by)
    return version


def colours_after(client, experiment: str):
    """The colours of the next runs of `experiment`, on round RUN_COLOURS from its newest run's."""
    newest = client.search_runs([experiment], max_results=1, order_by=["attributes.start_time DESC"])
    last = newest[0].data.tags.get(RUN_COLOUR_TAG) if newest else None
    return itertools.islice(itertools.cycle(RUN_COLOURS), RUN_COLOURS.index(last) + 1 if last in RUN_COLOURS else 0,
                            None)


def start(client, experiment: str, model: str, stage: str, data: dict, trained: Trained, file_params: dict,
          colour: str, parent: str | None = None) -> str:
    """Create the run, with its tags (a stage's, or a child's), colour and start time; its id."""
    tags = dict(trained.tags) | {RUN_COLOUR_TAG: colour}
    if parent is None:
        stage_tags, name = stage_run_tags(model, stage, data, trained.params, file_params, trained.started)
        tags |= stage_tags
        trained.tags |= {key: tags[key] for key in (EXPERIMENT_TAG, COMMIT_TAG) if key in tags}  # its version's too
        trained.name = trained.name or name
    else:
        tags |= {PARENT_TAG: parent, SWEEP_TAG: parent, DIGEST_TAG: data["digest"]}
    if trained.reason:
        tags[STATUS_REASON_TAG] = trained.reason
    return client.create_run(experiment, start_time=int(trained.started * 1000), tags=tags,
                             run_name=trained.name).info.run_id


def log_history(client, run_id: str, history: list[dict], model_id: str | None = None,
                datasets: dict | None = None) -> None:
    """Every epoch's metrics (step = epoch); the last epoch's linked to the model and its split's dataset."""
    from mlflow.entities import Metric

    now, last = int(time.time() * 1000), len(history)
    metrics = []
    for record in history:
        for key, value in record.items():
            if key == "epoch":
                continue
            dataset = (datasets or {}).get(split_of(key)) if record["epoch"] == last else None
            metrics.append(Metric(key, value, now, record["epoch"], model_id=model_id if record["epoch"] == last
                                  else None, dataset_name=dataset and dataset.name,
                                  dataset_digest=dataset and dataset.digest))
    for first in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[first:first + BATCH])


def log_model(logged: Logged, step: int) -> tuple[str, str]:
    """Log the model to the active run as MLflow serves it (`served`: models-from-code with this
    project's packages beside it, its requirements pinned from this environment): (model id, uri)."""
    import mlflow

    from tracking.served import MODEL_ARTIFACT, signature

    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow suggests type hints where a signature is given
        model_file = Path(scratch) / f"{logged.config.name}.pt"
        model_file.write_bytes(logged.weights)
        info = mlflow.pyfunc.log_model(
            name=logged.config.name, python_model=str(SERVING_CODE), artifacts={MODEL_ARTIFACT: str(model_file)},
            code_paths=[str(p) for p in PACKAGES], input_example=logged.example, step=step,
            signature=signature(logged.network, logged.config, logged.example), params=logged.params,
            pip_requirements=model_requirements())
        for folder, files in logged.files.items():  # "" for the run's own folder
            (Path(scratch) / f"files-{folder}").mkdir()
            for name, content in files.items():
                (Path(scratch) / f"files-{folder}" / name).write_bytes(content)
            mlflow.log_artifacts(str(Path(scratch) / f"files-{folder}"), folder or None)
    return info.model_id, info.model_uri


def model_requirements() -> list[str]:
    """What the logged model needs installed: the versions it was logged with."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in MODEL_PACKAGES]


def register(uri: str, name: str, logged: Logged, trained: Trained, data: dict):
    """A new version of `name`, tagged with its run, where it came from and its headline metrics."""
    import mlflow

    provenance = {key: trained.tags[key] for key in (EXPERIMENT_TAG, COMMIT_TAG) if key in trained.tags}
    tags = {RUN_NAME_TAG: trained.name, DIGEST_TAG: data["digest"]} | provenance | logged.version_tags
    return mlflow.register_model(uri, name, tags=tags)


def crown_if_allowed(client, version, chosen_by: str) -> None:
    """Point `champion` at `version` if this account may; say which happened (never fails the stage:
    its outputs and run are in place, and `make promote` can crown it later)."""
    from tracking.registry import crown, crowning

    try:
        why_not = shortfall(*crowning(version.name))
        if why_not is None:
            crown(client, version.name, version.version, chosen_by)
    except Exception as error:  # noqa: BLE001 - said in one line, as any other reason
        why_not = one_line(error)
    print(f"{version.name} version {version.version} " + ("is `champion`" if why_not is None else
          f"registered, not made `champion`: {why_not} (`make promote` by one who has it)"))


def end(client, run_id: str, status: str, trained: Trained) -> None:
    """End the run with `status` at the training's end (the store may be gone: said, not raised)."""
    import mlflow

    try:
        if mlflow.active_run():
            mlflow.end_run(status)
        client.set_terminated(run_id, status, end_time=int(trained.ended * 1000))
    except Exception as error:  # noqa: BLE001 - the error that ended the run is the one to report
        print(f"MLflow run {run_id} could not be ended {status}: {one_line(error)}")
        return
    print(f"MLflow run {run_id} {status}: {trained.name}")


def log_datasets(datasets: dict, attempts: int = 4) -> None:
    """Log the active run's datasets ({split: dataset}), again if another run inserted one first."""
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


def split_datasets(data: dict, folder: Path, history: list[dict]) -> dict:
    """{split: an MLflow dataset} for each split the history scores (source: the folder, digest: its content)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    splits = list(dict.fromkeys(split_of(key) for record in history[-1:] for key in record if key != "epoch"))
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(folder.resolve().as_uri())
    return {split: MetaDataset(source=source, name=f"{data['name']}-{split}", digest=data["digest"])
            for split in splits}
