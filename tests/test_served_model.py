"""The registered champion served over HTTP (`mlflow models serve` on 127.0.0.1) answers in the user's terms.

Real-format test images (the tiny IDX data the pipeline prepared, scaled to [0, 1]) are posted
as float lists and as a float64 DataFrame; the answers must be those of the champion's model file.
"""

import json
import subprocess
import urllib.error
import urllib.request

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
    promoted = run(path, "python", "-m", "regression.tracking.registry", "--model", MODEL, env=env).stdout
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


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
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

    for payload in ({"inputs": pixels.astype(np.float32).tolist()},
                    {"dataframe_split": {"data": pixels.tolist()}}):
        status, answer = post(url, payload)
        assert status == 200, answer
        predictions = answer["predictions"]
        assert [p["class"] for p in predictions] == expected
        for p, row in zip(predictions, probabilities.tolist()):
            assert list(p["probabilities"]) == list(config.classes)
            assert list(p["probabilities"].values()) == pytest.approx(row, abs=1e-6)


@pytest.mark.parametrize("rows, says", [
    ([[255] * 784], "divide 0-255 pixels by 255"),
    ([[0.5] * 783], "got an array of shape (1, 783)"),
    ([[0.5] * 785], "got an array of shape (1, 785)"),  # a column schema would drop the 785th silently
    ([[[0.5] * 28] * 28], "got an array of shape (1, 28, 28)"),
], ids=["unscaled pixels", "one too few", "one too many", "an image, not a row"])
def test_bad_input_is_rejected_saying_why_in_one_short_message(served, rows, says):
    url, _ = served
    status, answer = post(url, {"inputs": rows})
    assert status == 400
    assert says in answer["message"] and len(answer["message"].encode()) < 1024, answer
