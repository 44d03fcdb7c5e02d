"""The code MLflow runs to load a logged model (models-from-code): the pyfunc `serving.Answer`."""

import mlflow

from regression.serving import Answer

mlflow.models.set_model(Answer())
