"""Links into the MLflow UI: the run list in the lesson's saved view, and the compare view of runs.

Usage: python -m regression.ui [BASE_URL]   (`make ui` prints the run-list link this way)

The saved view is an experiment tag the pipeline sets (`tracking.lesson_view`); the UI opens
it with `?viewStateShareKey=<key>` on the experiment's runs page. The links name that page and
the "Model training" side of the UI's GenAI / Model training switch: MLflow 3.17 opens a bare
`#/experiments/<id>` on GenAI's overview in a browser that has not been switched, and drops
the share key on the way.
"""

import json
import sys
from urllib.parse import quote

from regression.tracking import EXPERIMENT_TAGS, TrackingError, open_experiment

DEFAULT_BASE_URL = "http://127.0.0.1:5000"  # where `make ui` serves the project's store
WORKFLOW = "machine_learning"  # "Model training"
SHARED_VIEW = "mlflow.sharedViewState."  # the UI's tag prefix for saved views
[VIEW_TAG] = [key for key in EXPERIMENT_TAGS if key.startswith(SHARED_VIEW)]
VIEW_KEY = VIEW_TAG.removeprefix(SHARED_VIEW)


def run_list_url(base_url: str, experiment_id: str) -> str:
    """The experiment's run list in the lesson's view."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?viewStateShareKey={VIEW_KEY}&workflowType={WORKFLOW}")


def compare_url(base_url: str, experiment_id: str, run_ids: list[str]) -> str:
    """The UI's side-by-side comparison of `run_ids`: a plot, then their params and metrics."""
    runs, experiments = quote(json.dumps(list(run_ids))), quote(json.dumps([experiment_id]))
    return (f"{base_url.rstrip('/')}/#/compare-runs"
            f"?runs={runs}&experiments={experiments}&workflowType={WORKFLOW}")


def main(argv: list[str] | None = None) -> int:
    """Open the experiment (saving the view if missing) and print the run-list link."""
    args = sys.argv[1:] if argv is None else argv
    base_url = args[0] if args else DEFAULT_BASE_URL
    try:
        experiment_id = open_experiment()
    except TrackingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"The runs, key params and metrics, best first: {run_list_url(base_url, experiment_id)}")
    print("To compare runs there: tick them and press Compare.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
