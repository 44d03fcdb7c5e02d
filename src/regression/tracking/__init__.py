"""MLflow, all of it, in one package: the only part of the project that imports mlflow.

What the stages and CI call, here:
    ModelRun           the one run of a model stage (`run`)
    open_experiment    the store, and the experiment a stage records into (`store`), TrackingError
    opened             the store, and the experiment of each dataset of params.yaml (`store`)
    runs_of, MODEL_TAG a model's runs, by the tag naming it (`naming`)

One module per job:
    store       where the store is, opening it with its experiments, its health, bounded HTTP
    naming      the tag names, the experiment per dataset, run names from the params' diff, the
                registered model's name
    run         the run: params, epochs, datasets, model logging, registration, orphans
    registry    the ranking rule, the `champion` alias (`make promote`)
    served      what a logged model answers; logged_model.py is the code MLflow loads it with
    compare     `make compare` and the summary of `make run`
    ui          `make ui`, and links into the UI
    sweep       the MLflow record of a sweep (`sweep@<model>`): a parent run, a child per trial
    server      `make server`, the team's MLflow server on PostgreSQL (postgres.py: the cluster)
"""

from regression.tracking.naming import MODEL_TAG, runs_of
from regression.tracking.run import ModelRun
from regression.tracking.store import TrackingError, open_experiment, opened

__all__ = ["MODEL_TAG", "ModelRun", "TrackingError", "open_experiment", "opened", "runs_of"]
