"""What a model stage's run is called and tagged, its experiment, and its model's registered name.

A run goes to the experiment of its dataset (`experiment_name`): the linear model's MSE and the
softmax models' cross-entropy are both `train_loss`/`test_loss`, and an experiment per dataset
keeps each chart of MLflow's UI to one kind of loss. A sweep's runs go to the dataset's sweeps
experiment, so that its long trials do not share a step axis with the lesson's runs. A run is
named after its model and what makes it different: inside `dvc exp run`, the params that differ
from the committed params.yaml and the DVC experiment, else the commit. Its tags tie it to DVC
and git; `runs_of` finds a model's runs by them. Its model is registered as a new version of
`<dataset>-<model>` (`registered_name`).
"""

import hashlib
import os
import subprocess
import time
from pathlib import Path

from regression.params import committed_params, flat
from tracking.searching import PAGE_SIZE, every

MODEL_TAG, STAGE_TAG, EXPERIMENT_TAG, DIGEST_TAG = "model", "dvc.stage", "dvc.experiment", "data.digest"
CHANGED_TAG, COMMIT_TAG = "dvc.changed_params", "mlflow.source.git.commit"
STATUS_REASON_TAG = "mlflow.runStatusReason"
NOTE_TAG = "mlflow.note.content"  # MLflow's own: a run's description
RUN_NAME_TAG = "run_name"  # a registered model version's: the run it came from
SELECTED_BY_TAG = "champion.selected_by"  # a champion version's: the metric that chose it
# A sweep's: its parent run's trials and chosen trial; a child's parent (MLflow's own: the UI nests
# it), sweep, model and trial; its champion version's sweep and trial.
PARENT_TAG, SWEEP_TAG, TRIAL_TAG = "mlflow.parentRunId", "sweep.run_id", "sweep.trial"
SWEEP_MODEL_TAG, TRIALS_TAG, CHOSEN_TRIAL_TAG = "sweep.model", "sweep.trials", "sweep.chosen_trial"
CHOSEN_TAG = "sweep.chosen"  # a sweep's run and its champion version's: the settings it chose
RUN_COLOUR_TAG = "mlflow.runColor"  # MLflow's own: the colour the UI draws a run in (else a hash of its id)
MODEL_DIGEST_TAG = "model.sha256"  # a model stage's run: the model file it wrote (`run_of_outputs`)
NAME_WIDTH = 40  # a run name's model and changed params, in the UI's run list
SWEEPS = "/sweeps"  # after a dataset's name: the experiment of its sweeps


def sweeps_of(dataset: str) -> str:
    """The experiment key of a dataset's sweeps: `<dataset>/sweeps`."""
    return dataset + SWEEPS


def dataset_of(key: str) -> str:
    """The dataset of an experiment key (`fashion-mnist` or `fashion-mnist/sweeps`)."""
    return key.removesuffix(SWEEPS)


def experiment_name(key: str) -> str:
    """The experiment an experiment key's runs go to: the key itself (`fashion-mnist`, and
    `fashion-mnist/sweeps` for its sweeps: short, as the UI's list shows some 17 characters of a
    name); or, as MLflow does, MLFLOW_EXPERIMENT_NAME if set (one experiment for every run)."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or key


def experiment_keys(params: dict) -> list[str]:
    """The experiments params.yaml's stages record into: each train entry's dataset, then the sweeps
    experiment of each sweep entry's dataset."""
    trained = [entry["dataset"] for entry in params.get("train", {}).values()]
    swept = [sweeps_of(entry["dataset"]) for entry in params.get("sweep", {}).values()]
    return list(dict.fromkeys([*trained, *swept]))


def registered_name(dataset: str, model: str) -> str:
    """The registered model a model's versions go to: `<dataset>-<model>`."""
    return f"{dataset}-{model}"


def runs_of(client, experiment_ids: list[str], model: str | None, status: str | None = None,
            stage: str | None = None, tags: dict[str, str] | None = None, order_by: list[str] | None = None,
            limit: int | None = None, page_size: int = PAGE_SIZE) -> list:
    """The runs of `model` (every model's if None) in the experiments, with `status`, made by the
    DVC `stage` (`train@softmax_nn`, `sweep@softmax_nn`) and carrying `tags` if given: all of them,
    page by page, or the first `limit` in the store's `order_by` order."""
    query = [f"tags.{MODEL_TAG} = '{model}'"] if model else []
    query += [f"attributes.status = '{status}'"] if status else []
    query += [f"tags.`{STAGE_TAG}` = '{stage}'"] if stage else []
    query += [f"tags.`{key}` = '{value}'" for key, value in (tags or {}).items()]
    experiments = list(dict.fromkeys(experiment_ids))
    return list(every(client.search_runs, page_size, limit, experiment_ids=experiments,
                      filter_string=" and ".join(query), order_by=order_by))


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes: the model file a run wrote, tagged on the run (MODEL_DIGEST_TAG)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_of_outputs(client, experiment_ids: list[str], model: str, stage: str, model_file: Path):
    """The finished run of the DVC `stage` that wrote `model_file` as it is now (the newest, if
    the same code, params and data made the same bytes again); None if no run did."""
    if not Path(model_file).is_file():
        return None
    runs = runs_of(client, experiment_ids, model, status="FINISHED", stage=stage,
                   tags={MODEL_DIGEST_TAG: file_digest(model_file)},
                   order_by=["attributes.start_time DESC"], limit=1)
    return runs[0] if runs else None


def version_metric_tags(metrics: dict) -> dict[str, str]:
    """A registered version's tags for its headline metrics (what `make promote` ranks by)."""
    return {key: f"{value:.6g}" for key, value in metrics.items() if isinstance(value, float)}


def git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def baseline_params() -> dict:
    """params.yaml as committed at the experiment's baseline (or HEAD), {} if unknown: an unreadable
    committed file only costs the run name its detail."""
    return committed_params(os.environ.get("DVC_EXP_BASELINE_REV") or "HEAD") or {}


def changed_params(current: dict, committed: dict, model: str) -> dict[str, object]:
    """Params that differ from what `model`'s entry is compared with, and matter to its stage.

    Its entry is compared with the committed `train.<model>`, or, for a new entry (a variant), with
    the entry of its architecture (`train.mlp` for `mlp_wide`), as committed or else as it is now.
    Its own keys are named as is (`lr`); keys of other sections in full, after them
    (`datasets.fashion-mnist.validation_size`). With no committed params.yaml (not a git repo), nothing counts.
    """
    if not committed:
        return {}
    entry = (current.get("train") or {}).get(model) or {}
    architecture = entry.get("architecture", model)
    bases = [(committed.get("train") or {}).get(key) for key in (model, architecture)]
    base = next((b for b in bases if isinstance(b, dict)), (current.get("train") or {}).get(architecture) or {})
    own = {key: value for key, value in entry.items() if key != "architecture" and base.get(key, object()) != value}
    now, before = flat(current), flat(committed)
    others = {key: value for key, value in now.items()
              if not key.startswith("train.") and before.get(key, object()) != value}
    return own | others


def run_name(model: str, changed: dict, experiment: str | None, commit: str | None,
             started: float | None = None) -> str:
    """'softmax_nn lr=0.1 · glare-dhow' in a DVC experiment, 'softmax_nn @ 7d9c8f2 14:03:07' outside
    one (the training's start: repeated runs of a commit differ); the model and its changes cut at 40."""
    name = " ".join([model] + [f"{key}={value}" for key, value in changed.items()])
    name = name if len(name) <= NAME_WIDTH else name[:NAME_WIDTH - 1] + "…"
    if experiment:
        return f"{name} · {experiment}"
    when = f" {time.strftime('%H:%M:%S', time.localtime(started))}" if started else ""
    return f"{name} @ {commit[:7]}{when}" if commit else name + when


def where_from(tags: dict) -> str:
    """The run's DVC experiment, else '@ <commit>'."""
    return tags.get(EXPERIMENT_TAG) or f"@ {tags.get(COMMIT_TAG, '?')[:7]}"


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


def stage_run_tags(model: str, stage: str, data: dict, params: dict, file_params: dict,
                   started: float | None = None) -> tuple[dict, str]:
    """(tags, name) of a model stage's run: the model, DVC stage and experiment, git commit, data
    digest, account, numerics, the params changed from the committed params.yaml, its description."""
    from regression import numerics
    from tracking.access import account

    commit, exp_name = git("rev-parse", "HEAD"), os.environ.get("DVC_EXP_NAME")
    changed = changed_params(file_params, baseline_params(), model) if file_params else {}
    tags = {MODEL_TAG: model, STAGE_TAG: os.environ.get("DVC_STAGE", stage), DIGEST_TAG: data["digest"],
            "mlflow.user": account(), CHANGED_TAG: " ".join(f"{k}={v}" for k, v in changed.items())}
    tags |= numerics.describe() | ({COMMIT_TAG: commit} if commit else {})
    tags |= {EXPERIMENT_TAG: exp_name} if exp_name else {}
    tags[NOTE_TAG] = description(model, params, changed, tags, data)
    return tags, run_name(model, changed, exp_name, commit, started)
