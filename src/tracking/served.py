"""The served model: what a logged model answers (class names and probabilities, or predictions).

The logged model is `logged_model.py` (MLflow models-from-code), which serves `Answer`, with
the model file (`models/<model>.pt`: its config and weights, no pickle) as an artifact and
the `regression` package as code, so it loads wherever its requirements are installed:
`mlflow.pyfunc.load_model(uri)` or `mlflow models serve -m <uri> --env-manager local`.

A classifier answers each image with its class name and the probability of every class; the
linear model answers its prediction. Input: one row per example; for Fashion-MNIST, 784 pixel
values in [0, 1] (float32 or float64), as the training data was scaled. The logged model's
signature says so (`signature`), and `rows` checks it.
"""

import json
import sys

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types import Schema, TensorSpec

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
    """The input as a float32 (n, n_features) array; anything else is rejected, saying in plain
    words what came and what was expected."""
    def reject(why: str):
        raise InputRefused(f"expected one row of {n_features} numbers per example"
                           f"{' (pixels in [0, 1])' if pixels else ''}: {why}", INVALID_PARAMETER_VALUE)

    try:
        X = np.asarray(model_input)  # a DataFrame's values too
    except ValueError:  # rows of different lengths, or a row that is not a list
        not_rows = [row for row in model_input if isinstance(row, str) or not hasattr(row, "__len__")]
        if not_rows:
            reject(f"got {repr(not_rows[0])[:40]} where a row of numbers belongs")
        lengths = sorted({len(row) for row in model_input})
        reject(f"got rows of different lengths ({', '.join(map(str, lengths))} values)")
    if X.size == 0:
        reject("got no rows")
    if X.ndim == 1 and X.shape[0] == n_features:
        X = X.reshape(1, -1)
    if X.ndim == 2 and X.shape[1] != n_features:
        reject(f"got rows of {X.shape[1]} values")
    if X.ndim != 2:
        images = pixels and X.ndim > 2 and int(np.prod(X.shape[1:])) == n_features
        reject(f"got an array of shape {X.shape}" + ("; flatten each image to one row" if images else ""))
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        # An object array (a DataFrame of object columns, say) may hold nothing but numbers: taken.
        if found := first_not_a_number(X.flat):
            [value] = found
            what = f"the text {value[:40]!r}" if isinstance(value, str) else repr(value)[:40]
            reject(f"got {what} where a number belongs; send numbers, not text")
    X = np.ascontiguousarray(X, dtype=np.float32)  # a DataFrame's values come column-major
    if not np.isfinite(X).all():
        reject("got NaN or infinite values")
    if pixels and (X.min() < 0 or X.max() > 1):
        advice = "divide 0-255 pixels by 255" if X.min() >= 0 else "a pixel is 0 (black) to 1 (white), never below"
        reject(f"got values from {X.min():g} to {X.max():g}; {advice}")
    return X


def first_not_a_number(values) -> tuple:
    """(the first of `values` that is not a real number, as a Python value,) or () if all are;
    True and False are not numbers here, nor is a complex number."""
    for value in values:
        real = isinstance(value, int | float | np.integer | np.floating)
        if not real or isinstance(value, bool | np.bool_):
            return (value.item() if isinstance(value, np.generic) else value,)
    return ()


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


def signature(model: torch.nn.Module, config: ModelConfig, example: np.ndarray) -> ModelSignature:
    """Input: rows of `n_features` float32 numbers (a tensor of shape (-1, n_features)); output: what
    `answer` gives. The model checks its input itself (`rows`), and MLflow is told so.

    MLflow's own check of a tensor spec refuses float64 (what numpy and pandas give) and, like a
    column schema's, says what was wrong in kilobytes: the whole input, then the error. A
    signature marked as the model's own (as one MLflow infers from a `predict` type hint) is
    shown on the model's page but left to the model to check: pyfunc and `mlflow models serve`
    hand the input to `answer` as it came, which takes float32 and float64 alike and refuses
    anything else in one short line. `mlflow models serve` then takes JSON `{"inputs": ...}` only.
    """
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, config.n_features))])
    outputs = infer_signature(example, answer(model, config, example)).outputs
    described = ModelSignature(inputs=inputs, outputs=outputs)
    described._is_signature_from_type_hint = True  # checked by `rows`, not by MLflow (above)
    return described


def check_bodies(n_features: int) -> None:
    """In `mlflow models serve`, refuse in one line any body but JSON `{"inputs": ...}`, before MLflow parses it.

    MLflow's scoring server answers a body that is not JSON (or empty) with the whole body in a
    multi-line message, one nested 100,000 deep with a 500, another payload format
    (`dataframe_split`, `instances`) or a missing Content-Type with advice that does not apply to
    this model. Its public `invocations` has no hook for that, so the model, loading in the server
    (whose module is imported first), puts a check in front of it; the parsed body is handed on,
    not parsed twice. Nothing changes in a process that is not a scoring server.
    """
    scoring = sys.modules.get("mlflow.pyfunc.scoring_server")
    if scoring is None or getattr(scoring.invocations, "checks_bodies", False):
        return
    mlflow_invocations = scoring.invocations

    def invocations(data, content_type, model, input_schema):
        def refuse(got: str):
            raise InputRefused(f'expected JSON {{"inputs": [[...], ...]}}, one row of {n_features} numbers per '
                               f"example, sent with Content-Type: application/json: got {got}",
                               INVALID_PARAMETER_VALUE)

        kind = (content_type or "").partition(";")[0].strip().lower()
        if kind != "application/json":
            refuse("a CSV body" if kind == "text/csv" else f"Content-Type {kind!r}" if kind else "no Content-Type")
        try:
            body = json.loads(data)
        except RecursionError:
            refuse("JSON nested too deep")
        except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8
            refuse("an empty body" if not data.strip() else f"a body that is not JSON ({str(error)[:60]})")
        if not isinstance(body, dict) or "inputs" not in body:
            keys = ", ".join(repr(key)[:30] for key in body) if isinstance(body, dict) else ""
            refuse(f"the keys {keys}; put the rows under 'inputs'" if keys else
                   f"a JSON {type(body).__name__}; put the rows under 'inputs'")
        return mlflow_invocations(body, content_type, model, input_schema)

    invocations.checks_bodies = True
    scoring.invocations = invocations


class Answer(PythonModel):
    """The pyfunc model: loads the model file logged as the artifact MODEL_ARTIFACT."""

    def load_context(self, context):
        self.model, self.config = load_model(context.artifacts[MODEL_ARTIFACT])
        check_bodies(self.config.n_features)

    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        return answer(self.model, self.config, model_input)
