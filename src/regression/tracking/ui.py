"""`make ui`: the MLflow UI on the project's store, and links into it (the lesson's view, compared runs).

Usage: python -m regression.tracking.ui [--port 5000]   (`make ui`: prints the run-list link,
then serves the UI on http://127.0.0.1:<port> until stopped)

The UI shows the project's own store (`mlflow.db`); a tracking server shows its own UI. The
saved view is an experiment tag the store sets up (`store.lesson_view`); the UI opens it with
`?viewStateShareKey=<key>` on the experiment's runs page. The links name that page and the
"Model training" side of the UI's GenAI / Model training switch: MLflow 3.17 opens a bare
`#/experiments/<id>` on GenAI's overview in a browser that has not been switched, and drops
the share key on the way.
"""

import argparse
import json
import os
import sys
from urllib.parse import quote

from regression.tracking.store import VIEW_KEY, local_store_uri, opened

HOST, PORT = "127.0.0.1", 5000
WORKFLOW = "machine_learning"  # "Model training"


def local_ui_url(port: int = PORT) -> str:
    return f"http://{HOST}:{port}"


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
    """Open the project's store (saving the view if missing), print the run-list link, serve the UI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=PORT, help=f"the UI's port (default {PORT})")
    parser.add_argument("--link-only", action="store_true", help="print the link, do not serve the UI")
    args = parser.parse_args(argv)
    store = os.environ["MLFLOW_TRACKING_URI"] = local_store_uri()
    if (experiment_id := opened()) is None:
        return 1
    link = run_list_url(local_ui_url(args.port), experiment_id)
    print(f"The runs, key params and metrics, best first: {link}")
    print("To compare runs there: tick them and press Compare.", flush=True)
    if args.link_only:
        return 0
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store,
               "--host", HOST, "--port", str(args.port)]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    sys.exit(main())
