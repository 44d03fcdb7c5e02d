"""After the real pipeline: fail unless every target is met and DVC sees nothing left to do.

Usage (from the project root): PYTHONPATH=src python .ci/check_targets.py
"""

import json
import subprocess
import sys
from pathlib import Path

MIN_ACCURACY = 0.83      # softmax_scratch and softmax_nn, test set
MAX_LINEAR_ERROR = 0.01  # |w - true_w| and |b - true_b|
MIN_SWEEP_ACCURACY = 0.846  # the sweep's refit softmax_nn, test set: above scikit-learn's best (0.8452)
MODELS = {"linear": "test_loss", "softmax_scratch": "test_accuracy", "softmax_nn": "test_accuracy"}


def check_mlflow_runs(dvc_yaml: dict) -> list[str]:
    """Each model stage's run that made its model file, in the project's store: finished, with its
    model registered."""
    from mlflow import MlflowClient

    from regression import tracking
    from regression.tracking.compare import stage_file
    from regression.tracking.naming import run_of_outputs
    from regression.tracking.searching import every

    experiments = tracking.opened()  # the store and experiments the pipeline recorded into
    if experiments is None:
        return ["the MLflow store cannot be opened (the error above)"]
    client = MlflowClient()
    failures = []
    stages = [("train", model, metric) for model, metric in MODELS.items()]
    for stage, model, metric in stages + [("sweep", "softmax_nn", "test_accuracy")]:
        model_file = stage_file(model, stage, "model", dvc_yaml)
        run = run_of_outputs(client, list(experiments.values()), model, f"{stage}@{model}", model_file)
        if run is None or metric not in run.data.metrics:
            failures.append(f"{stage}@{model}: no finished MLflow run with {metric} made {model_file}")
            continue
        versions = list(every(client.search_model_versions, filter_string=f"run_id = '{run.info.run_id}'"))
        if not versions:
            failures.append(f"{stage}@{model}: MLflow run {run.info.run_id} registered no model version")
        value = run.data.metrics[metric]
        print(f"{stage}@{model}: MLflow run '{run.info.run_name}' finished, {metric} = {value:.4g}, "
              f"model {', '.join(f'{v.name} v{v.version}' for v in versions)}")
    return failures


def main() -> int:
    from regression.params import read_yaml
    from regression.tracking.compare import metrics_file

    dvc_yaml = read_yaml("dvc.yaml")  # where each stage writes its metrics

    failures = []
    for model in ("softmax_scratch", "softmax_nn"):
        accuracy = json.loads(metrics_file(model, dvc_yaml=dvc_yaml).read_text())["test_accuracy"]
        print(f"{model}: test accuracy {accuracy:.4f} (target >= {MIN_ACCURACY})")
        if accuracy < MIN_ACCURACY:
            failures.append(f"{model} test accuracy {accuracy:.4f} < {MIN_ACCURACY}")
    sweep = json.loads(metrics_file("softmax_nn", "sweep", dvc_yaml).read_text())
    accuracy = sweep["test_accuracy"]
    print(f"sweep@softmax_nn: refit test accuracy {accuracy:.4f} (target >= {MIN_SWEEP_ACCURACY})")
    if accuracy < MIN_SWEEP_ACCURACY:
        failures.append(f"sweep@softmax_nn refit test accuracy {accuracy:.4f} < {MIN_SWEEP_ACCURACY}")
    linear = json.loads(metrics_file("linear", dvc_yaml=dvc_yaml).read_text())
    print(f"linear: w [{linear['w_0']:.4f}, {linear['w_1']:.4f}], b {linear['b']:.4f}")
    for key in ("w_err", "b_err"):
        if linear[key] > MAX_LINEAR_ERROR:
            failures.append(f"linear {key} {linear[key]:.4g} > {MAX_LINEAR_ERROR}")
    failures += check_mlflow_runs(dvc_yaml)
    dvc = Path(sys.executable).parent / "dvc"
    status = subprocess.run([str(dvc), "status", "--json"], capture_output=True, text=True, check=True)
    if json.loads(status.stdout or "{}"):
        failures.append(f"dvc status is not clean after the pipeline: {status.stdout}")
    else:
        print("dvc status: clean")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
