"""MLflow, all of it but the team server (`team_server`): the only package of the lesson that imports mlflow.

    access      a tracking server asked over plain HTTP before any work (no MLflow)
    record      a model stage's run, model and version, written once its training is done
    store       where the store is, opening it with its experiments
    naming      tag names, experiment and run names, a model's runs
    registry    the ranking rule, the `champion` alias (`make promote`)
    served      what a logged model answers; logged_model.py is the code MLflow loads it with
    compare     `make compare` and the summary of `make run`
    ui          `make ui`, and links into the UI
    searching   every page of a search, counts
"""
