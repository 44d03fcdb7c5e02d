"""The registered champion served over HTTP (`mlflow models serve` on 127.0.0.1) answers in the user's terms.

Real-format test images (the tiny IDX data the pipeline prepared, scaled to [0, 1]) are posted
as float lists and as a float64 DataFrame; the answers must be those of the champion's model file.
Every logged model's MLmodel file records its input and output signature.
"""

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from projects import BIN, environment, free_port, run, stop, store_uri, wait_for_http

pytestmark = pytest.mark.slow
MODEL = "fashion-mnist-softmax_nn"


@pytest.fixture(scope="module")
def served(reproduced):
    """(URL of the served champion, project path)."""
    path = reproduced[0]
    env = environment(MLFLOW_TRACKING_URI=store_uri(path), PYTHONPATH="src")
    promoted = run(path, "python", "-m", "tracking.registry", "--model", MODEL, env=env).stdout
    # The sweep's refit model is the one version chosen on a validation split; it names the sweep's run.
    assert "val_accuracy" in promoted and "from run 'softmax_nn sweep of " in promoted, promoted
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/ping", server)
    yield url, path
    stop(server)


def post(url: str, payload: dict | str, content_type: str = "application/json") -> tuple[int, dict]:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    request = urllib.request.Request(f"{url}/invocations", data=body.encode(),
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_images_get_their_class_names_and_probabilities(served):
    url, path = served
    images = np.load(path / "data/fashion-mnist/test_X.npy")[:20]
    pixels = images.reshape(len(images), -1) / 255.0  # float64, as numpy gives
    # The champion is the sweep's refit model: its file's answers, computed here.
    import torch

    from regression.models import load_model

    champion, config = load_model(path / "models/sweep/softmax_nn.pt")
    with torch.no_grad():
        probabilities = torch.softmax(champion(torch.from_numpy(pixels.astype(np.float32))), dim=1)
    expected = [config.classes[i] for i in probabilities.argmax(dim=1).tolist()]

    for payload in ({"inputs": pixels.astype(np.float32).tolist()}, {"inputs": pixels.tolist()}):
        status, answer = post(url, payload)
        assert status == 200, answer
        predictions = answer["predictions"]
        assert [p["class"] for p in predictions] == expected
        for p, row in zip(predictions, probabilities.tolist()):
            assert list(p["probabilities"]) == list(config.classes)
            assert list(p["probabilities"].values()) == pytest.approx(row, abs=1e-6)


@pytest.mark.parametrize("rows, says", [
    ([[255] * 784], "divide 0-255 pixels by 255"),
    ([[0.5] * 783], "got rows of 783 values"),
    ([[0.5] * 785], "got rows of 785 values"),  # a column schema would drop the 785th silently
    ([[[0.5] * 28] * 28], "got an array of shape (1, 28, 28); flatten each image to one row"),
    ([["0.5"] * 784], "got the text '0.5' where a number belongs; send numbers, not text"),
    ([[0.5] * 784, [0.5] * 10], "got rows of different lengths (10, 784 values)"),
], ids=["unscaled pixels", "one too few", "one too many", "an image, not a row", "text", "ragged"])
def test_bad_input_is_rejected_saying_why_in_one_short_message(served, rows, says):
    url, _ = served
    status, answer = post(url, {"inputs": rows})
    assert status == 400
    message = answer["message"]
    assert message.startswith("expected one row of 784 numbers per example (pixels in [0, 1]): "), answer
    assert says in message and len(message.encode()) < 1024 and "\n" not in message, answer


@pytest.mark.parametrize("body, content_type, got", [
    ('{"dataframe_split": {"data": [[0.5]]}}', "application/json", "the keys 'dataframe_split'; put the rows under 'inputs'"),
    ('{"instances": [[0.5]]}', "application/json", "the keys 'instances'; put the rows under 'inputs'"),
    ("\n".join([",".join(["0.5"] * 784)] * 2), "text/csv", "a CSV body"),
    ('{"inputs": [[0.5]]}', "application/x-www-form-urlencoded", "Content-Type 'application/x-www-form-urlencoded'"),
    ("", "application/json", "an empty body"),
    ('{"inputs": [[0.5,', "application/json", "a body that is not JSON (Expecting value: line 1 column 18"),
    ("[" * 100_000 + "]" * 100_000, "application/json", "JSON nested too deep"),
], ids=["dataframe_split", "instances", "csv", "curl's default type", "empty", "malformed", "deep"])
def test_other_bodies_are_refused_saying_to_send_json_inputs(served, body, content_type, got):
    """The model checks its own input (its signature says so): the server takes `{"inputs": ...}` only,
    and says so in one line whatever else comes."""
    url, _ = served
    status, answer = post(url, body, content_type=content_type)
    assert status == 400 and answer["message"].startswith(
        'expected JSON {"inputs": [[...], ...]}, one row of 784 numbers per example, sent with '
        f"Content-Type: application/json: got {got}"), answer
    assert "\n" not in answer["message"] and len(answer["message"]) < 300, answer


def test_every_logged_model_records_its_input_and_output_signature(served, tmp_path):
    """The MLmodel file of each registered model's latest version: rows of float32 in, the answer out."""
    import mlflow
    import yaml

    _, path = served
    mlflow.set_tracking_uri(store_uri(path))
    widths = {"fashion-mnist-softmax_nn": 784, "fashion-mnist-softmax_scratch": 784, "synthetic-linear": 2}
    for name, width in widths.items():
        folder = mlflow.artifacts.download_artifacts(f"models:/{name}/latest", dst_path=str(tmp_path / name))
        signature = yaml.safe_load((Path(folder) / "MLmodel").read_text())["signature"]
        assert json.loads(signature["inputs"]) == [
            {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, width]}}], (name, signature)
        outputs = [column["name"] for column in json.loads(signature["outputs"])]
        assert outputs == (["prediction"] if width == 2 else ["class", "probabilities"]), (name, outputs)
