"""After the real pipeline: fail unless every target is met and DVC sees nothing left to do.

Usage (from the project root): PYTHONPATH=src python .ci/check_targets.py
"""

import json
import subprocess
import sys
from pathlib import Path

from regression.data import classifies
from regression.headline import ACCURACY, FIT_ERROR, TEST, metric, ranked_by
from regression.params import read_yaml
from tracking.compare import metrics_file

MIN_ACCURACY = 0.83      # every classifier of `train`, test set (the lesson's softmax models reach 0.8331)
MAX_LINEAR_ERROR = 0.01  # a regressor's |w - true_w| and |b - true_b|
# A sweep's refit, test set: softmax_nn above scikit-learn's best LogisticRegression (0.8452), the
# MLP above the Fashion-MNIST paper's best scikit-learn MLPClassifier (0.877).
MIN_SWEEP_ACCURACY = {"softmax_nn": 0.846, "mlp": 0.895}
TEST_ACCURACY = metric(TEST, ACCURACY)


def check_mlflow_runs(stages: list[tuple[str, str, str]], dvc_yaml: dict) -> list[str]:
    """Each model stage's run that made its model file, in the project's store: finished, with its
    model registered."""
    from mlflow import MlflowClient

    from tracking.compare import stage_file
    from tracking.naming import run_of_outputs
    from tracking.searching import every
    from tracking.store import opened

    experiments = opened()  # the store and experiments the pipeline recorded into
    if experiments is None:
        return ["the MLflow store cannot be opened (the error above)"]
    client = MlflowClient()
    failures = []
    for stage, model, name in stages:
        model_file = stage_file(model, stage.partition("@")[0], "model", dvc_yaml)
        run = run_of_outputs(client, list(experiments.values()), model, stage, model_file)
        if run is None or name not in run.data.metrics:
            failures.append(f"{stage}: no finished MLflow run with {name} made {model_file}")
            continue
        versions = list(every(client.search_model_versions, filter_string=f"run_id = '{run.info.run_id}'"))
        if not versions:
            failures.append(f"{stage}: MLflow run {run.info.run_id} registered no model version")
        value = run.data.metrics[name]
        print(f"{stage}: MLflow run '{run.info.run_name}' finished, {name} = {value:.4g}, "
              f"model {', '.join(f'{v.name} v{v.version}' for v in versions)}")
    return failures


def main() -> int:
    dvc_yaml, params = read_yaml("dvc.yaml"), read_yaml("params.yaml")  # where each stage writes its metrics
    failures, stages = [], []
    for model, entry in params["train"].items():
        metrics = json.loads(metrics_file(model, dvc_yaml=dvc_yaml).read_text())
        stages.append((f"train@{model}", model, ranked_by(classifies(entry["dataset"]))))
        if classifies(entry["dataset"]):
            print(f"{model}: test accuracy {metrics[TEST_ACCURACY]:.4f} (target >= {MIN_ACCURACY})")
            if metrics[TEST_ACCURACY] < MIN_ACCURACY:
                failures.append(f"{model} test accuracy {metrics[TEST_ACCURACY]:.4f} < {MIN_ACCURACY}")
            continue
        # the fit's errors are beside the true w and b, in the evaluation folder: metrics/<model>/evaluation/fit.json
        fit = json.loads((metrics_file(model, dvc_yaml=dvc_yaml).with_suffix("") / "evaluation" / "fit.json").read_text())
        print(f"{model}: " + ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()))
        failures += [f"{model} {key} {fit[key]:.4g} > {MAX_LINEAR_ERROR}" for key in fit
                     if key.endswith(FIT_ERROR) and fit[key] > MAX_LINEAR_ERROR]
    for model in params.get("sweep", {}):
        accuracy = json.loads(metrics_file(model, "sweep", dvc_yaml).read_text())[TEST_ACCURACY]
        target = MIN_SWEEP_ACCURACY.get(model, MIN_ACCURACY)
        stages.append((f"sweep@{model}", model, TEST_ACCURACY))
        print(f"sweep@{model}: refit test accuracy {accuracy:.4f} (target >= {target})")
        if accuracy < target:
            failures.append(f"sweep@{model} refit test accuracy {accuracy:.4f} < {target}")
    failures += check_mlflow_runs(stages, dvc_yaml)
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
