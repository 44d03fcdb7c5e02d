"""The served model: what a logged model answers (class names and probabilities, or predictions).

The logged model is `logged_model.py` (MLflow models-from-code), which serves `Answer`, with
the model file (`models/<model>.pt`: its config and weights, no pickle) as an artifact and
the `regression` package as code, so it loads wherever its requirements are installed:
`mlflow.pyfunc.load_model(uri)` or `mlflow models serve -m <uri> --env-manager local`.

A classifier answers each image with its class name and the probability of every class; the
linear model answers its prediction. Input: one row per example; for Fashion-MNIST, 784 pixel
values in [0, 1] (float32 or float64), as the training data was scaled.
"""

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from regression.models import MODELS, ModelConfig, load_model, softmax

MODEL_ARTIFACT = "model"  # the logged model's artifact holding the model file


class InputRefused(MlflowException):
    """Input the model cannot answer: an HTTP 400 from `mlflow models serve`, in one short line.

    The scoring server puts "Failed to predict data '<the whole input>'" before the message of
    any MlflowException a model raises: kilobytes for one row of pixels. The message keeps only
    what comes after that, which says what was wrong.
    """

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, text: str) -> None:
        self._message = text.rsplit(self.SERVER_PREFIX_END, 1)[-1] if text.startswith("Failed to predict") else text

    SERVER_PREFIX_END = "\nError: "


def rows(model_input, n_features: int, pixels: bool) -> np.ndarray:
    """The input as a float32 (n, n_features) array; anything else is rejected, saying why."""
    def reject(why: str):
        raise InputRefused(f"expected one row of {n_features} numbers per example"
                           f"{' (pixels in [0, 1])' if pixels else ''}: {why}", INVALID_PARAMETER_VALUE)

    try:
        X = np.asarray(model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else model_input)
    except Exception as error:  # ragged lists and the like
        reject(f"cannot read the input as an array ({error})")
    if X.ndim == 1 and X.shape[0] == n_features:
        X = X.reshape(1, -1)
    if X.ndim != 2 or X.shape[1] != n_features:
        reject(f"got an array of shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        reject(f"got values of type {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)  # a DataFrame's values come column-major
    if not np.isfinite(X).all():
        reject("got NaN or infinite values")
    if pixels and len(X) and (X.min() < 0 or X.max() > 1):
        reject(f"got values from {X.min():g} to {X.max():g}; divide 0-255 pixels by 255")
    return X


def answer(model: torch.nn.Module, config: ModelConfig, model_input) -> pd.DataFrame:
    """One row per example: `class` and `probabilities` (by class name), or `prediction`."""
    classifies = MODELS[config.architecture].classifies
    X = rows(model_input, config.n_features, pixels=classifies)
    with torch.no_grad():
        outputs = model(torch.from_numpy(X))
    if not classifies:
        return pd.DataFrame({"prediction": outputs[:, 0].tolist()})
    probabilities = softmax(outputs).double().numpy()
    return pd.DataFrame({
        "class": [config.classes[i] for i in outputs.argmax(dim=1).tolist()],
        "probabilities": [dict(zip(config.classes, map(float, row))) for row in probabilities],
    })


def signature(model: torch.nn.Module, config: ModelConfig, example: np.ndarray):
    """Output: what `answer` gives. No input schema: `rows` is the one check of the input.

    MLflow's own check of a column schema drops extra columns without a word (785 numbers
    pass) and answers a short row with one line per missing column (15 KB for 783 numbers);
    a float32 tensor spec refuses float64. Without an input schema, pyfunc and `mlflow models
    serve` hand the input to `answer` as it came, which accepts float32 and float64 alike and
    refuses anything but rows of exactly `n_features` numbers in one line.
    """
    return ModelSignature(inputs=None, outputs=infer_signature(example, answer(model, config, example)).outputs)


class Answer(PythonModel):
    """The pyfunc model: loads the model file logged as the artifact MODEL_ARTIFACT."""

    def load_context(self, context):
        self.model, self.config = load_model(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        return answer(self.model, self.config, model_input)
