"""MLflow's record of a sweep: a parent run, a child run per trial, the refit champion registered.

A sweep's runs go to its dataset's sweeps experiment (`naming.sweeps_of`): its trials run for
more epochs than the lesson's runs, which keep a step axis of their own. The parent run holds
the sweep's own params (`sweep.`: its search space, validation split, number of trials), the
table of trials (an artifact), and, once chosen, what a train run of the chosen settings would
hold under the same names: the settings as params (lr, epochs, ...), and per epoch the chosen
trial's validation scores (val_accuracy, val_loss: what chose it) and the refit's training and
test scores (its last epoch's test scores are the result, linked to its model). So the saved
view's columns and the charts read a sweep as they read a train run. Its logged model records
just the settings it was trained with, and is registered as a new version of `<dataset>-<model>`
and given the `champion` alias; the version is tagged with the sweep's run, the chosen settings
and the validation score that chose them. Every trial's child run is made when the sweep starts
and ended when its result arrives: FINISHED, or FAILED if it diverged.
The sweep, not its workers, writes every run, so workers need no access to the store. If the
sweep stops (an error, Ctrl-C, SIGTERM), every run still open is ended FAILED or KILLED.
"""

import time
from pathlib import Path

from regression import stage
from regression.headline import TEST, split_of
from regression.search import CHOSEN_BY, setting_text
from regression.tracking.access import shortfall
from regression.tracking.naming import (
    CHOSEN_TAG,
    CHOSEN_TRIAL_TAG,
    COMMIT_TAG,
    DIGEST_TAG,
    EXPERIMENT_TAG,
    MODEL_DIGEST_TAG,
    PARENT_TAG,
    RUN_NAME_TAG,
    STATUS_REASON_TAG,
    SWEEP_MODEL_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    TRIALS_TAG,
    file_digest,
    registered_name,
    run_name,
    sweeps_of,
)
from regression.tracking.registry import ALIAS, crown, crowning
from regression.tracking.run import drop_process_tags, log_served_model, open_for, provenance, stage_tags
from regression.tracking.store import TrackingError, one_line, tracking_uri

SWEEP_PARAM = "sweep."  # before the sweep's own params on its parent run: apart from the settings


class SweepRun:
    """The MLflow runs of one sweep, from `start` to the end of its `with` block."""

    def __init__(self, client, experiment: str, parent: str, children: dict[int, str], model: str,
                 data: dict, name: str, tags: dict):
        self.client, self.experiment, self.parent = client, experiment, parent
        self.model, self.data = model, data
        self.name, self.tags = name, tags  # the parent run's
        self.children = children           # trial -> run id
        self.open = {parent, *children.values()}
        self.forget_on_interrupt = lambda: None

    @classmethod
    def start(cls, model: str, sweep_params: dict, trials: list[dict], data: dict) -> "SweepRun":
        """Open the store; start the parent run (the sweep's params, as `sweep.<key>`) and a child
        run per trial (its params). `trials` are each trial's full training params, `data` the
        dataset's meta."""
        from mlflow.entities import Param

        client, experiment = open_for(model, sweeps_of(data["name"]))
        tags = stage_tags(model, f"sweep@{model}", data) | {TRIALS_TAG: str(len(trials))}
        name = run_name(f"{model} sweep of {len(trials)}", {}, tags.get(EXPERIMENT_TAG), tags.get(COMMIT_TAG))
        try:
            parent = client.create_run(experiment, run_name=name, tags=tags).info.run_id
            run = cls(client, experiment, parent, {}, model, data, name, tags)
            run.forget_on_interrupt = stage.on_interrupt(lambda: run.end_open("KILLED"))
            client.log_batch(parent, params=[Param(SWEEP_PARAM + k, str(v)) for k, v in sweep_params.items()])
            for trial, params in enumerate(trials, start=1):
                child = client.create_run(experiment, run_name=f"{model} trial {trial}", tags={
                    PARENT_TAG: parent, SWEEP_TAG: parent, TRIAL_TAG: str(trial), SWEEP_MODEL_TAG: model,
                    DIGEST_TAG: data["digest"]}).info.run_id
                run.children[trial] = child
                run.open.add(child)
                client.log_batch(child, params=[Param(k, str(v)) for k, v in params.items()])
        except Exception as error:
            if "run" in locals():
                run.end_open("FAILED")
            raise cls.tracking_error(error) from None
        return run

    def __enter__(self) -> "SweepRun":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            self.end_open("KILLED" if issubclass(kind, stage.Interrupted) else "FAILED")
            raise_as = self.tracking_error(error)
            if raise_as is not error:
                raise raise_as from None

    @staticmethod
    def tracking_error(error: BaseException) -> BaseException:
        from mlflow.exceptions import MlflowException

        if isinstance(error, MlflowException):
            return TrackingError(f"MLflow sweep in {tracking_uri()}: {one_line(error)}")
        return error

    def end_open(self, status: str) -> None:
        """End every run still open (children first) with `status`; the store may be gone."""
        self.forget_on_interrupt()
        children = [run_id for run_id in self.children.values() if run_id in self.open]
        for run_id in children + ([self.parent] if self.parent in self.open else []):
            try:
                self.client.set_terminated(run_id, status)
                if run_id == self.parent:
                    drop_process_tags(self.client, run_id)
            except Exception:  # the store is gone: the parent is marked when the sweep next starts
                pass
        self.open.clear()
        print(f"MLflow sweep run {self.parent} and its open trials {status}")

    def trial(self, result: dict) -> None:
        """Record one trial's result in its child run and end that run."""
        from mlflow.entities import Metric

        run_id, now = self.children[result["trial"]], int(time.time() * 1000)
        metrics = [Metric(key, value, now, record["epoch"]) for record in result["history"]
                   for key, value in record.items() if key != "epoch"]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 per batch
            self.client.log_batch(run_id, metrics=metrics[start:start + 1000])
        if result.get("error"):
            self.client.set_tag(run_id, STATUS_REASON_TAG, result["error"])
        self.client.set_terminated(run_id, "FINISHED" if not result.get("error") else "FAILED")
        self.open.discard(run_id)

    def finish(self, chosen: dict, settings: dict, trial_history: list[dict], history: list[dict],
               metrics: dict, model, config, model_file: Path, table: Path, input_example) -> str:
        """The champion on the parent run, under a train run's names: the chosen trial's full
        training params (`settings`) and its validation scores per epoch (from `trial_history`),
        the refit's per-epoch training and test scores (`history`), its test metrics (`metrics`)
        at its last epoch, linked to its model; the table of trials; its model, recording
        `settings`, registered and given the alias. Ends the parent; the version."""
        import mlflow
        from mlflow.entities import Metric, Param

        register_as, now = registered_name(self.data["name"], self.model), int(time.time() * 1000)
        epochs = history[-1]["epoch"]
        scores = {key: chosen[key] for key in CHOSEN_BY if key in chosen}
        headline = {key: value for key, value in metrics.items() if isinstance(value, float)
                    and split_of(key) == TEST}
        per_epoch = [(record["epoch"], key, value) for record in history for key, value in record.items()
                     if key != "epoch" and not (record["epoch"] == epochs and key in headline)]
        per_epoch += [(record["epoch"], key, value) for record in trial_history
                      for key, value in record.items() if key in scores]
        self.client.log_artifact(self.parent, str(table))
        self.client.log_batch(self.parent, params=[Param(k, str(v)) for k, v in settings.items()])
        for start in range(0, len(per_epoch), 1000):  # MLflow takes at most 1000 per batch
            batch = [Metric(key, value, now, epoch) for epoch, key, value in per_epoch[start:start + 1000]]
            self.client.log_batch(self.parent, metrics=batch)
        self.client.set_tag(self.parent, CHOSEN_TRIAL_TAG, str(chosen["trial"]))
        self.client.set_tag(self.parent, CHOSEN_TAG, setting_text(chosen["settings"]))
        self.client.set_tag(self.parent, MODEL_DIGEST_TAG, file_digest(model_file))

        mlflow.start_run(run_id=self.parent)  # the active run, which log_model logs to
        # A logged model takes its run's params, the sweep's search space among them, unless it
        # is made first with its own: the settings it was trained with.
        logged = mlflow.initialize_logged_model(name=config.name, source_run_id=self.parent,
                                                params={k: str(v) for k, v in settings.items()},
                                                experiment_id=self.experiment)
        info = log_served_model(model, config, model_file, input_example, model_id=logged.model_id)
        mlflow.log_metrics(headline, step=epochs, model_id=info.model_id)
        version_tags = {RUN_NAME_TAG: self.name, SWEEP_TAG: self.parent,
                        TRIAL_TAG: str(chosen["trial"]), CHOSEN_TAG: setting_text(chosen["settings"]),
                        DIGEST_TAG: self.data["digest"]} | provenance(self.tags)
        version_tags |= {key: f"{value:.6g}" for key, value in scores.items()}
        version_tags |= {key: f"{value:.6g}" for key, value in headline.items()}
        version = mlflow.register_model(info.model_uri, register_as, tags=version_tags).version
        why_not = shortfall(*crowning(register_as))
        if why_not is None:
            crown(self.client, register_as, version, f"sweep {CHOSEN_BY[0]}")
        self.forget_on_interrupt()
        mlflow.end_run("FINISHED")
        drop_process_tags(self.client, self.parent)
        self.open.discard(self.parent)
        outcome = (f"is `{ALIAS}`" if why_not is None
                   else f"registered, not made `{ALIAS}`: {why_not} (`make promote` by one who has it)")
        print(f"MLflow sweep run {self.parent} FINISHED; {register_as} version {version} {outcome}")
        return version
