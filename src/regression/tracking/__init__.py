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
    companion   the train stage's run kept by a second process, beside the stage's start and training
    registry    the ranking rule, the `champion` alias (`make promote`)
    served      what a logged model answers; logged_model.py is the code MLflow loads it with
    compare     `make compare` and the summary of `make run`
    ui          `make ui`, and links into the UI
    sweep       the MLflow record of a sweep (`sweep@<model>`): a parent run, a child per trial
    server      `make server`, the team's MLflow server on PostgreSQL (postgres.py: the cluster)
"""

import importlib

# name -> the module it comes from, imported on first use (PEP 562): importing one module of the
# package (`server` asking `store` for a health check) does not load mlflow, which `run` needs.
_FROM = {"MODEL_TAG": "naming", "runs_of": "naming", "ModelRun": "run",
         "TrackingError": "store", "open_experiment": "store", "opened": "store"}
__all__ = sorted(_FROM)


def __getattr__(name: str):
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
