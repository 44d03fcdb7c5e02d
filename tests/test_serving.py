"""tracking.served: what a logged model answers, and how it rejects input it cannot answer."""

import io
import json
import re
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from idx_files import CLASSES
from regression.models import ModelConfig, build_model, model_bytes
from tracking.served import Answer, answer, signature

CLASSIFIER = ModelConfig("softmax_nn", "softmax_nn", n_features=784, n_outputs=10, classes=CLASSES)
LINEAR = ModelConfig("linear", "linear", n_features=2, n_outputs=1)
MLP_VARIANT = ModelConfig("mlp_wide", "mlp", n_features=784, n_outputs=10, classes=CLASSES, params={"hidden": 32})


def initialised(config: ModelConfig) -> torch.nn.Module:
    model = build_model(config)
    model.initialise_(0.5, torch.Generator().manual_seed(0))  # large weights: no two classes tie
    return model.eval()


@pytest.fixture(scope="module")
def classifier():
    return initialised(CLASSIFIER)


@pytest.fixture(scope="module")
def pixels():
    """Five images as rows of 784 values in [0, 1], float64 (pandas' default)."""
    return np.random.default_rng(0).random((5, 784))


def test_classifier_answers_the_class_of_the_largest_logit_and_its_probabilities(classifier, pixels):
    got = answer(classifier, CLASSIFIER, pixels)

    with torch.no_grad():
        logits = classifier(torch.from_numpy(pixels).float())
    assert list(got.columns) == ["class", "probabilities"] and len(got) == 5
    assert got["class"].tolist() == [CLASSES[i] for i in logits.argmax(dim=1).tolist()]
    assert len(set(got["class"])) > 1  # the check above is not about one class only
    expected = torch.softmax(logits.double(), dim=1)
    for row, probabilities in zip(expected, got["probabilities"]):
        assert list(probabilities) == list(CLASSES)
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert list(probabilities.values()) == pytest.approx(row.tolist(), abs=1e-6)
        assert max(probabilities, key=probabilities.get) == CLASSES[int(row.argmax())]


def test_a_variant_of_another_architecture_answers_as_its_table_row_says(pixels):
    """A classifier by its architecture's row (the MLP's), whatever its entry is named."""
    model = initialised(MLP_VARIANT)
    got = answer(model, MLP_VARIANT, pixels)
    with torch.no_grad():
        logits = model(torch.from_numpy(pixels).float())
    assert got["class"].tolist() == [CLASSES[i] for i in logits.argmax(dim=1).tolist()]
    assert list(got["probabilities"][0]) == list(CLASSES)


def test_float32_and_float64_input_give_the_same_answer(classifier, pixels):
    as_float64 = answer(classifier, CLASSIFIER, pixels)
    as_float32 = answer(classifier, CLASSIFIER, pixels.astype(np.float32))
    pd.testing.assert_frame_equal(as_float64, as_float32)


def test_a_dataframe_a_list_and_a_single_row_are_accepted(classifier, pixels):
    expected = answer(classifier, CLASSIFIER, pixels)
    from_frame = answer(classifier, CLASSIFIER, pd.DataFrame(pixels))
    assert from_frame["class"].tolist() == expected["class"].tolist()
    pd.testing.assert_frame_equal(answer(classifier, CLASSIFIER, pixels.tolist()), expected)
    pd.testing.assert_frame_equal(answer(classifier, CLASSIFIER, pixels[0]), expected.iloc[:1])


def test_numbers_in_an_object_array_or_frame_are_answered_as_numbers(classifier, pixels):
    """Numbers held as Python objects (a DataFrame of object columns, say) are numbers all the same."""
    expected = answer(classifier, CLASSIFIER, pixels)
    as_objects = pixels.astype(object)
    as_objects[0, :392] = [int(v > 0.5) for v in pixels[0, :392]]  # ints 0 and 1 among the floats
    expected_with_ints = answer(classifier, CLASSIFIER, as_objects.astype(np.float64))
    pd.testing.assert_frame_equal(answer(classifier, CLASSIFIER, as_objects), expected_with_ints)
    object_frame = pd.DataFrame(pixels, dtype=object)
    pd.testing.assert_frame_equal(answer(classifier, CLASSIFIER, object_frame), expected)


def test_linear_model_answers_its_prediction_for_any_real_input():
    model = initialised(LINEAR)
    X = np.array([[-3.0, 7.5], [0.25, -0.5]])  # not pixels: outside [0, 1] is fine
    got = answer(model, LINEAR, X)
    with torch.no_grad():
        expected = model(torch.from_numpy(X).float())[:, 0].tolist()
    assert list(got.columns) == ["prediction"]
    assert got["prediction"].tolist() == pytest.approx(expected)


def bad_pixels(value):
    X = np.full((2, 784), 0.5)
    X[1, 100] = value
    return X


@pytest.mark.parametrize("config, model_input, got", [
    (CLASSIFIER, bad_pixels(1.5), "got values from 0.5 to 1.5"),
    (CLASSIFIER, bad_pixels(-0.25), "got values from -0.25 to 0.5; a pixel is 0 (black) to 1 (white), never below"),
    (CLASSIFIER, np.full((1, 784), 255.0), "divide 0-255 pixels by 255"),
    (CLASSIFIER, np.full((1, 784), -0.5), "got values from -0.5 to -0.5; a pixel is 0 (black) to 1 (white)"),
    (CLASSIFIER, [], "got no rows"),
    (CLASSIFIER, np.zeros((0, 784)), "got no rows"),
    (CLASSIFIER, bad_pixels(np.nan), "got NaN or infinite values"),
    (CLASSIFIER, bad_pixels(np.inf), "got NaN or infinite values"),
    (CLASSIFIER, np.full((3, 783), 0.5), "got rows of 783 values"),
    (CLASSIFIER, np.full((2, 28, 28), 0.5), "shape (2, 28, 28); flatten each image to one row"),
    (CLASSIFIER, np.full((1, 784), "0.5"), "got the text '0.5' where a number belongs; send numbers, not text"),
    (CLASSIFIER, [[0.5] * 783 + ["0.5"]], "got the text '0.5' where a number belongs"),
    (CLASSIFIER, pd.DataFrame([["x"] * 784]), "got the text 'x' where a number belongs"),
    (CLASSIFIER, [[0.5] * 784, [0.5] * 3], "got rows of different lengths (3, 784 values)"),
    (CLASSIFIER, [[0.5] * 784, None], "got None where a row of numbers belongs"),
    (CLASSIFIER, [[0.5] * 784, 7], "got 7 where a row of numbers belongs"),
    (CLASSIFIER, [[0.5] * 784, "x" * 100], f"got '{'x' * 39} where a row of numbers belongs"),  # 40 shown
    (CLASSIFIER, np.full((2, 28, 27), 0.5), "got an array of shape (2, 28, 27)"),
    (LINEAR, np.ones((1, 1, 2)), "got an array of shape (1, 1, 2)"),
    (CLASSIFIER, np.array([[0.5] * 783 + ["y" * 100]], dtype=object),
     f"got the text '{'y' * 40}' where a number belongs"),  # the text's first 40 characters
    (CLASSIFIER, [[0.5] * 783 + [None]], "got None where a number belongs"),
    (CLASSIFIER, np.array([[0.5] * 783 + [{"pixel": "z" * 100}]], dtype=object),
     f"got {{'pixel': '{'z' * 29} where a number belongs"),  # the first 40 characters of what came
    (CLASSIFIER, np.full((1, 784), True), "got True where a number belongs"),
    (CLASSIFIER, np.array([[0.5] * 783 + [False]], dtype=object), "got False where a number belongs"),
    (CLASSIFIER, np.full((1, 784), 0.5 + 0.5j), "got (0.5+0.5j) where a number belongs"),
    (LINEAR, np.array([[1.0, np.nan]]), "got NaN or infinite values"),
    (LINEAR, np.array([[1.0, 2.0, 3.0]]), "got rows of 3 values"),
], ids=["above-1", "below-0", "0-255-pixels", "all-negative", "empty-list", "no-rows", "nan", "inf", "wrong-width", "images", "strings",
        "a-string-in-a-list", "object-frame", "ragged", "none", "a-number-for-a-row",
        "long-text-for-a-row", "not-images", "linear-3d", "long-text", "none-in-a-row", "a-dict", "booleans",
        "a-boolean-among-numbers", "complex", "linear-nan", "linear-wrong-width"])
def test_bad_input_is_rejected_saying_what_was_expected_and_what_came(classifier, config, model_input, got):
    model = classifier if config is CLASSIFIER else initialised(LINEAR)
    with pytest.raises(MlflowException) as caught:
        answer(model, config, model_input)
    message = caught.value.message
    expected = ("784 numbers per example (pixels in [0, 1])" if config is CLASSIFIER
                else "2 numbers per example")
    assert message.startswith(f"expected one row of {expected}: "), message
    assert got in message, message
    if got.startswith("got "):
        assert message.startswith(f"expected one row of {expected}: {got}"), message
    if "shape" in got:  # a hint to flatten images only where each example holds an image's pixels
        assert message.endswith(got), message
    assert not re.search(r"<U\d|dtype|object|ndarray|inhomogeneous", message), message  # no numpy talk
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"  # a 400 from `mlflow models serve`


def test_pyfunc_loads_the_model_file_and_answers_as_answer_does(classifier, pixels, tmp_path):
    path = tmp_path / "softmax_nn.pt"
    path.write_bytes(model_bytes(classifier, CLASSIFIER))
    pyfunc = Answer()
    pyfunc.load_context(types.SimpleNamespace(artifacts={"model": str(path)}))

    assert pyfunc.config == CLASSIFIER
    pd.testing.assert_frame_equal(pyfunc.predict(None, pixels), answer(classifier, CLASSIFIER, pixels))


@pytest.fixture
def saved_pyfunc(classifier, pixels, tmp_path):
    """The classifier saved as the train stage logs it (models-from-code, its signature, pinned
    requirements), loaded back through `mlflow.pyfunc.load_model`: MLflow's own input handling runs
    before `answer`. Saved for each test (a tenth of a second), so each one checks `signature`."""
    import mlflow

    from tracking.record import PACKAGES, SERVING_CODE, model_requirements
    from tracking.served import MODEL_ARTIFACT

    model_file = tmp_path / "softmax_nn.pt"
    model_file.write_bytes(model_bytes(classifier, CLASSIFIER))
    example = pixels[:2].astype(np.float32)
    mlflow.pyfunc.save_model(tmp_path / "model", python_model=str(SERVING_CODE),
                             artifacts={MODEL_ARTIFACT: str(model_file)}, code_paths=[str(p) for p in PACKAGES],
                             signature=signature(classifier, CLASSIFIER, example), input_example=example,
                             pip_requirements=model_requirements())
    return mlflow.pyfunc.load_model(str(tmp_path / "model"))


@pytest.mark.parametrize("config, width", [(CLASSIFIER, 784), (LINEAR, 2)], ids=["classifier", "linear"])
def test_the_signature_says_rows_of_float32_in_and_the_answer_out(config, width):
    model = initialised(config)
    example = np.random.default_rng(0).random((2, width)).astype(np.float32)
    saved = signature(model, config, example).to_dict()  # as the MLmodel file holds it
    assert json.loads(saved["inputs"]) == [{"type": "tensor", "tensor-spec": {"dtype": "float32",
                                                                              "shape": [-1, width]}}]
    assert [column["name"] for column in json.loads(saved["outputs"])] == (
        ["class", "probabilities"] if config is CLASSIFIER else ["prediction"])


def test_the_saved_model_file_records_the_input_signature(saved_pyfunc):
    """The MLmodel file (what the version page shows): a tensor of 784 float32 per row."""
    inputs = saved_pyfunc.metadata.get_input_schema()
    assert inputs is not None and inputs.is_tensor_spec()
    [spec] = inputs.inputs
    assert spec.type == np.dtype(np.float32) and spec.shape == (-1, 784)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_loaded_pyfunc_accepts_float32_and_float64_rows(saved_pyfunc, classifier, pixels, dtype):
    expected = answer(classifier, CLASSIFIER, pixels)
    assert saved_pyfunc.predict(pixels.astype(dtype))["class"].tolist() == expected["class"].tolist()
    frame = pd.DataFrame(pixels.astype(dtype))
    assert saved_pyfunc.predict(frame)["class"].tolist() == expected["class"].tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, got", [((1, 785), "got rows of 785 values"),
                                        ((2, 783), "got rows of 783 values"),
                                        ((1, 784 * 2), "got rows of 1568 values")],
                         ids=["one-too-many", "one-too-few", "two-images-in-a-row"])
def test_the_loaded_pyfunc_refuses_rows_of_another_width_in_one_short_line(saved_pyfunc, shape, got, dtype):
    """MLflow's column schema would drop the 785th number silently and list 784 columns for 783."""
    for model_input in (np.full(shape, 0.5, dtype=dtype), pd.DataFrame(np.full(shape, 0.5, dtype=dtype))):
        with pytest.raises(MlflowException) as caught:
            saved_pyfunc.predict(model_input)
        message = caught.value.message
        assert got in message and len(message.encode()) < 1024, message


EXPECTED = 'expected JSON {"inputs": [[...], ...]}, one row of 784 numbers per example, sent with Content-Type: application/json: got '


@pytest.mark.parametrize("body, content_type, got", [
    (b"0.5,0.5\n", "text/csv", "a CSV body"),
    (b'{"inputs": [[0.5]]}', "application/x-www-form-urlencoded", "Content-Type 'application/x-www-form-urlencoded'"),
    (b'{"inputs": [[0.5]]}', None, "no Content-Type"),
    (b"", "application/json", "an empty body"),
    (b'{"inputs": [[0.5,', "application/json", "a body that is not JSON (Expecting value"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "JSON nested too deep"),
    (b'{"dataframe_split": {"data": [[0.5]]}}', "application/json", "the keys 'dataframe_split'; put the rows under 'inputs'"),
    (b'[[0.5]]', "application/json; charset=utf-8", "a JSON list; put the rows under 'inputs'"),
], ids=["csv", "form", "no content type", "empty", "not json", "deep", "dataframe_split", "a bare list"])
def test_a_scoring_server_refuses_any_body_but_json_inputs_in_one_line(classifier, tmp_path, monkeypatch,
                                                                      body, content_type, got):
    """`mlflow models serve` would answer these with the whole body, a 500 or advice for another kind of
    model: once the model is loaded there (its module imported first), each is one line saying what to send."""
    import mlflow.pyfunc.scoring_server as scoring

    handed_on = []
    monkeypatch.setattr(scoring, "invocations", lambda *args: handed_on.append(args))  # MLflow's, standing in
    path = tmp_path / "softmax_nn.pt"
    path.write_bytes(model_bytes(classifier, CLASSIFIER))
    context = types.SimpleNamespace(artifacts={"model": str(path)})
    Answer().load_context(context)
    installed = scoring.invocations
    Answer().load_context(context)  # a second model in the same server: one check, not two
    assert scoring.invocations is installed

    with pytest.raises(MlflowException) as caught:
        scoring.invocations(body, content_type, "model", "schema")
    message = caught.value.message
    assert message.startswith(EXPECTED + got) and "\n" not in message and len(message) < 300, message
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"  # a 400
    scoring.invocations(b'{"inputs": [[0.5]], "params": {}}', "application/json", "model", "schema")
    assert handed_on == [({"inputs": [[0.5]], "params": {}}, "application/json", "model", "schema")]  # parsed once

    monkeypatch.delitem(sys.modules, "mlflow.pyfunc.scoring_server")  # a process that is not a server
    monkeypatch.setattr(scoring, "invocations", "MLflow's own")
    Answer().load_context(context)
    assert scoring.invocations == "MLflow's own"
