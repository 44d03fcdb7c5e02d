"""The code MLflow runs to load a logged model (models-from-code): the pyfunc `served.Answer`."""

import mlflow

from tracking.served import Answer

mlflow.models.set_model(Answer())
