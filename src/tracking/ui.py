"""`make ui`: the MLflow UI on the project's store, and links into it (the lesson's view, compared runs).

Usage: python -m tracking.ui [--port 5000]   (`make ui`: prints the run-list links,
then serves the UI on http://127.0.0.1:<port> until stopped)

The UI shows the project's own store (`mlflow.db`), an experiment per dataset; a tracking server
shows its own UI. The saved view is an experiment tag the store sets up (`store.lesson_view`);
the UI opens it with `?viewStateShareKey=<key>` on the experiment's runs page. The links name
that page and the "Model training" side of the UI's GenAI / Model training switch: MLflow 3.17
opens a bare `#/experiments/<id>` on GenAI's overview in a browser that has not been switched,
and drops the share key on the way.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from urllib.parse import quote

from tracking.store import VIEW_KEY, local_store_uri, opened, sqlite_path

HOST, PORT = "127.0.0.1", 5000
# Never offered to the UI: `make server`'s default, and the README's `mlflow models serve`.
OTHER_PORTS = {5001: "make server", 5002: "mlflow models serve"}
WORKFLOW = "machine_learning"  # "Model training"


def local_ui_url(port: int = PORT) -> str:
    return f"http://{HOST}:{port}"


def run_list_url(base_url: str, experiment_id: str, charts: bool = False) -> str:
    """The experiment's run list in the lesson's view; with `charts`, as the chart view (a chart
    per metric, a line per run)."""
    mode = "&compareRunsMode=CHART" if charts else ""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?viewStateShareKey={VIEW_KEY}&workflowType={WORKFLOW}{mode}")


def run_list_links(base_url: str, experiments: dict[str, str]) -> list[str]:
    """A line per experiment ({experiment key: id}, as `store.opened` gives): its dataset (and
    `/sweeps` for a sweeps experiment) and its run list's link."""
    by_id: dict[str, list[str]] = {}
    for dataset, experiment_id in experiments.items():
        by_id.setdefault(experiment_id, []).append(dataset)
    labels = {experiment_id: datasets[0] if len(datasets) == 1 else "all datasets"
              for experiment_id, datasets in by_id.items()}
    width = max(map(len, labels.values()), default=0)
    return [f"  {label:{width}} {run_list_url(base_url, experiment_id)}"
            for experiment_id, label in labels.items()]


def compare_url(base_url: str, experiment_id: str, run_ids: list[str]) -> str:
    """The UI's side-by-side comparison of `run_ids`: a plot, then their params and metrics."""
    runs, experiments = quote(json.dumps(list(run_ids))), quote(json.dumps([experiment_id]))
    return (f"{base_url.rstrip('/')}/#/compare-runs"
            f"?runs={runs}&experiments={experiments}&workflowType={WORKFLOW}")


def ui_command(store: str, port: int) -> list[str]:
    """`mlflow ui` for one person: one web worker, and no job runner (its background jobs serve
    GenAI features; with them and four workers the UI takes about twice as long to answer)."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host", HOST,
            "--port", str(port), "--workers", "1"]


def main(argv: list[str] | None = None) -> int:
    """Start the UI, and while it starts, open the project's store (saving the views if missing)
    and print the run-list links; serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=PORT, help=f"the UI's port (default {PORT})")
    parser.add_argument("--link-only", action="store_true", help="print the link, do not serve the UI")
    args = parser.parse_args(argv)
    store = os.environ["MLFLOW_TRACKING_URI"] = local_store_uri()
    if not args.link_only and (busy := port_in_use(args.port)):
        print(f"error: {local_ui_url(args.port)} is taken ({busy}): stop what serves there, or use a "
              f"free port (make ui PORT={free_port_after(args.port)})", file=sys.stderr)
        return 1
    # Ctrl-C too, even when started with SIGINT ignored (a shell's background job): stop the UI, then this
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    ui = None
    try:
        if not args.link_only and sqlite_path(store).exists():  # a new store is made by `opened` first
            ui = start_ui(store, args.port)
        if (experiments := opened()) is None:
            return 1
        print("The runs of each dataset's experiment, key params and metrics, best first:")
        print("\n".join(run_list_links(local_ui_url(args.port), experiments)))
        print("To compare runs there: tick them and press Compare.", flush=True)
        if args.link_only:
            return 0
        ui = ui or start_ui(store, args.port)
        return ui.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if ui is not None and ui.poll() is None:
            ui.terminate()  # `mlflow ui` stops its web server, and says so
            ui.wait()


def port_in_use(port: int) -> str | None:
    """Why the UI cannot listen on `port` of HOST (e.g. another UI is there), None if it can.

    `mlflow ui` would say so only in its log, after the links were printed, and exit 0."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
        try:
            probe.bind((HOST, port))
        except OSError as error:
            return error.strerror or str(error)
    return None


def free_port_after(port: int) -> int:
    """The first port after `port` where the UI could listen now, but the project's OTHER_PORTS."""
    return next(p for p in range(port + 1, 65536) if p not in OTHER_PORTS and port_in_use(p) is None)


def interrupted(signum, frame):
    raise KeyboardInterrupt


def start_ui(store: str, port: int) -> subprocess.Popen:
    """`mlflow ui` started, its output passed on with lines folded to 120 columns."""
    print(f"Starting the MLflow UI on {local_ui_url(port)} (Ctrl-C stops it) ...", flush=True)
    # Its own session: Ctrl-C reaches this process alone, which stops the UI in order (the web
    # server, interrupted itself, would print a page of traceback).
    ui = subprocess.Popen(ui_command(store, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True,
                          env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                                            "PYTHONWARNINGS": "ignore"})

    def pass_on():
        for line in ui.stdout:
            print(textwrap.fill(line.rstrip(), 120, subsequent_indent="    ") or "", flush=True)
    threading.Thread(target=pass_on, daemon=True).start()
    return ui


if __name__ == "__main__":
    sys.exit(main())
