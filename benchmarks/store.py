"""Store benchmark: the project's questions to a tracking store of 10², 10³ and 10⁴ runs and versions.

In a temporary git copy of the project, on the real Fashion-MNIST files, `dvc repro
train@softmax_nn` makes one real run and model version; then, for each backend (the default
sqlite `mlflow.db`, and the PostgreSQL server of `make server`), the store grows to each size
and, at each, these are timed (median of 3, the train stage once) and their answers checked:

  make compare     the best softmax_nn run shown first, and the count of all its runs
  make promote     `champion` on the best version (planted among the oldest: the last page)
  summary          `make run`'s summary names the run that wrote models/softmax_nn.pt
  forced train     `dvc repro -f -s train@softmax_nn`, and its time recording (its phase
                   "recording": once training is done, opening the store and writing the run,
                   its model and its version in one go)
  UI first page    POST /ajax-api/2.0/mlflow/runs/search as the UI's run list asks it (the
                   lesson's view: 100 runs, best test accuracy first), the best run first

How the store grows: through MLflow's own store code (`SqlAlchemyStore`, the code a tracking
server runs), in this process, a run at a time as the stage makes one: `create_run` with the
real run's tags, one `log_batch` with its params, tags and every epoch's metrics (values
varied, a validation split added), `update_run_info` FINISHED, and `create_model_version` with
the real version's tags. Only HTTP and the disk's flush per commit are spared (the builder's
own connections use sqlite's `synchronous=OFF` and PostgreSQL's `synchronous_commit=off`),
which makes 10⁴ runs minutes instead of half an hour; the rows are the same.

Target: correct answers at every size, and each time at 10⁴ at most 1.5x its time at 10².
It prints one table and writes the figures as JSON, and the same table, with the machine, the date
and the commit, into its section of docs/benchmarks.md (benchmarks/tables.py; not with --no-docs).
Run from the project root: .venv/bin/python benchmarks/store.py [--sizes 100 1000 10000]
[--backends sqlite postgresql] [--json benchmarks/store.json] [--no-docs]
"""

import argparse
import base64
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pipeline import BIN, ROOT, project_copy, stage_timings, timed
from tables import PAGE, machine, publish, table, wrap

MODEL, REGISTERED, STAGE = "softmax_nn", "fashion-mnist-softmax_nn", "train@softmax_nn"
BEST_AT = 5  # the planted best run and version: the 5th synthetic one, among the oldest
TARGET = 1.5


def environment(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env |= {"PATH": f"{BIN}{os.pathsep}{env['PATH']}", "MLFLOW_DISABLE_TELEMETRY": "true",
            "FASHION_MNIST_SOURCE": env.get("FASHION_MNIST_SOURCE", str(ROOT.parent / "shared/data/fashion-mnist"))}
    for who in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{who}_NAME", "benchmark")
        env.setdefault(f"GIT_{who}_EMAIL", "benchmark@example.com")
    return env


class Builder:
    """Adds runs and versions like the real one to a store, through MLflow's SqlAlchemyStore."""

    def __init__(self, db_uri: str, tracking_uri: str):
        from mlflow import MlflowClient
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from sqlalchemy import event

        import mlflow

        mlflow.set_tracking_uri(tracking_uri)  # where the registry finds the versions' logged model
        client = MlflowClient(tracking_uri)
        [real] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                    f"tags.model = '{MODEL}' and tags.`dvc.stage` = '{STAGE}'")
        [version] = client.search_model_versions(f"run_id = '{real.info.run_id}'")
        self.experiment, self.params, self.tags = real.info.experiment_id, real.data.params, real.data.tags
        self.history = {key: client.get_metric_history(real.info.run_id, key) for key in real.data.metrics}
        self.version_tags, self.source = version.tags, version.source
        self.real_test = float(version.tags["test_accuracy"])  # what make promote scores the real model at
        self.store = SqlAlchemyStore(db_uri, str(Path(tempfile.gettempdir()) / "unused-artifacts"))
        self.registry = Registry(db_uri)
        pragma = "PRAGMA synchronous=OFF" if db_uri.startswith("sqlite") else "SET synchronous_commit TO OFF"
        for engine in {self.store.engine, self.registry.engine}:
            event.listen(engine, "connect", lambda connection, _: connection.cursor().execute(pragma))
            engine.dispose()  # connections made from here on flush lazily
        self.made, self.random = 0, random.Random(0)
        self.best_version = None

    def add(self, n: int) -> float:
        from mlflow.entities import Metric, Param, RunStatus, RunTag
        from regression.headline import HEADLINE
        from mlflow.entities.model_registry import ModelVersionTag

        start = time.perf_counter()
        for _ in range(n):
            self.made += 1
            best = self.made == BEST_AT
            name = "bench-best" if best else f"bench-{self.made}"
            val = 0.995 if best else self.random.uniform(0.80, 0.86)
            # make promote scores the best again: it claims what its model (the real one) scores
            test = self.real_test if best else self.random.uniform(0.80, self.real_test)
            tags = self.tags | {"dvc.experiment": name, "dvc.changed_params": f"lr={self.made}",
                                "model.sha256": f"{self.made:064x}", "mlflow.runName": f"{MODEL} · {name}"}
            now = int(time.time() * 1000)
            run = self.store.create_run(self.experiment, "benchmark", now, [RunTag("model", MODEL)], tags["mlflow.runName"])
            run_id = run.info.run_id
            metrics = [Metric(key, m.value * self.random.uniform(0.97, 1.03), now, m.step)
                       for key, history in self.history.items() for m in history]
            last = max(m.step for history in self.history.values() for m in history)
            metrics += [Metric("val_accuracy", val, now, last), Metric("val_loss", 1 - val, now, last),
                        Metric("test_accuracy", test, now, last + 1)]
            self.store.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in self.params.items()],
                                 tags=[RunTag(k, v) for k, v in tags.items() if k != "model"])
            self.store.update_run_info(run_id, RunStatus.FINISHED, now + 1, None)
            # The version claims what its run recorded last (make promote checks each claim).
            recorded = {m.key: m.value for m in sorted(metrics, key=lambda m: m.step)}
            version_tags = self.version_tags | {"run_name": tags["mlflow.runName"]} | {
                key: f"{recorded[key]:.6g}" for key in HEADLINE if key in recorded}
            version = self.registry.create_model_version(
                REGISTERED, self.source, run_id, [ModelVersionTag(k, v) for k, v in version_tags.items()])
            if best:
                self.best_version = str(version.version)
        return time.perf_counter() - start


def count_runs(client) -> int:
    """The softmax_nn train runs, counted by reading every page (the benchmark's own count)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    total, token = 0, None
    while True:
        page = client.search_runs(experiments, f"tags.model = '{MODEL}'", max_results=1000, page_token=token)
        total, token = total + len(page), page.token
        if not token:
            return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_time(command, project, env, runs=3) -> tuple[float, str]:
    times, output = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{output}")
    return statistics.median(times), output


def signed_in() -> dict:
    """The Authorization header of this process's MLflow account, if it has one (a server with accounts)."""
    if "MLFLOW_TRACKING_USERNAME" not in os.environ:
        return {}
    login = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ['MLFLOW_TRACKING_PASSWORD']}"
    return {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}


def ui_first_page(url: str, experiment: str) -> tuple[float, dict]:
    body = json.dumps({"experiment_ids": [experiment], "run_view_type": "ACTIVE_ONLY", "max_results": 100,
                       "order_by": ["metrics.`test_accuracy` DESC"]}).encode()
    times, answer = [], {}
    for _ in range(4):  # the first warms the server; the median of the other three
        request = urllib.request.Request(f"{url}/ajax-api/2.0/mlflow/runs/search", body,
                                         {"Content-Type": "application/json"} | signed_in())
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), answer


def measure(project: Path, env: dict, builder: Builder, url: str, work: Path, label: str) -> dict:
    from mlflow import MlflowClient

    make = ["make", "--no-print-directory", f"VENV={BIN.parent}"]
    row = {}
    env = env | {"STAGE_TIMINGS": str(work / f"{label}.jsonl")}
    start = time.perf_counter()
    subprocess.run(["dvc", "repro", "-f", "-s", STAGE], cwd=project, env=env, check=True, capture_output=True)
    row["forced train"] = time.perf_counter() - start
    stage = stage_timings(work / f"{label}.jsonl")[-1]
    row["recording"] = stage["phases"]["recording"]
    client = MlflowClient(env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project / 'mlflow.db'}")
    total = count_runs(client)
    row["make compare"], output = median_time([*make, "compare", f"MODEL={MODEL}"], project, env)
    first = next(line for line in output.splitlines() if line.startswith("1 "))
    row["compare right"] = f"{MODEL}: {total:,} runs" in output and "bench-best" in first
    row["make promote"], output = median_time([*make, "promote"], project, env)
    row["promote right"] = f"{REGISTERED}: champion -> version {builder.best_version}," in output
    row["summary"], output = median_time([sys.executable, "-m", "tracking.compare", "--summary"],
                                         project, env | {"PYTHONPATH": "src"})
    newest = client.search_runs([builder.experiment], f"tags.`dvc.stage` = '{STAGE}'", max_results=1,
                                order_by=["attributes.start_time DESC"])[0]  # the forced train's run
    line = next(line for line in output.splitlines() if line.startswith(f"{MODEL} "))
    row["summary right"] = f"run '{newest.info.run_name}'" in line
    row["UI first page"], answer = ui_first_page(url, builder.experiment)
    runs = answer["runs"]
    row["UI right"] = runs[0]["info"]["run_name"].endswith("bench-best") and len(runs) == min(100, total)
    row["runs"] = total
    return row


def start_sqlite_ui(project: Path, env: dict, port: int) -> tuple[subprocess.Popen, str]:
    sys.path.insert(0, str(project / "src"))
    from team_server.server import healthy
    from tracking.ui import ui_command

    process = subprocess.Popen(ui_command(f"sqlite:///{project / 'mlflow.db'}", port), cwd=project,
                               env=env | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    if not healthy(url, process):
        sys.exit("the MLflow UI did not start")
    return process, url


def backend(name: str, project: Path, env: dict, sizes: list[int], work: Path) -> dict:
    sys.path.insert(0, str(project / "src"))
    from team_server.accounts import admin
    from team_server.postgres import USER, postgres_running
    from team_server.server import Server

    ui = None
    if name == "sqlite":
        db_uri = f"sqlite:///{project / 'mlflow.db'}"
        ui, url = start_sqlite_ui(project, env, free_port())
        tracking = db_uri
    else:
        port = free_port()
        subprocess.run([sys.executable, "-m", "team_server.server", "start", "--port", str(port),
                        "--postgres-port", str(free_port())], cwd=project, env=env | {"PYTHONPATH": "src"},
                       check=True)
        server = Server(project)
        url = tracking = f"http://127.0.0.1:{port}"
        account, password = admin(server.auth_settings)  # the server has accounts: act as its admin
        env = env | {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": account,
                     "MLFLOW_TRACKING_PASSWORD": password}
        os.environ.update(MLFLOW_TRACKING_USERNAME=account, MLFLOW_TRACKING_PASSWORD=password)  # this process's
        db_uri = (f"postgresql+psycopg://{USER}:{server.passwords()[USER]}@127.0.0.1:"
                  f"{postgres_running(server.data)[1]}/mlflow")
        subprocess.run(["dvc", "repro", "-f", "-s", STAGE], cwd=project, env=env, check=True, capture_output=True)
    try:
        builder, rows = Builder(db_uri, tracking), {}
        for size in sizes:
            print(f"{name}: growing the store to {size:,} runs and versions ...", flush=True)
            seconds = builder.add(size - builder.made)
            print(f"  built in {seconds:.0f} s; measuring", flush=True)
            rows[size] = measure(project, env, builder, url, work, f"{name}-{size}") | {"build s": seconds}
            print("  " + json.dumps(rows[size]), flush=True)
        return rows
    finally:
        if ui is not None:
            ui.terminate()
            ui.wait()
        if name != "sqlite":
            subprocess.run([sys.executable, "-m", "team_server.server", "stop"], cwd=project,
                           env=env | {"PYTHONPATH": "src"}, capture_output=True)


TIMED = ("make compare", "make promote", "summary", "forced train", "recording", "UI first page")
CHECKS = {"make compare": "compare right", "make promote": "promote right", "summary": "summary right",
          "UI first page": "UI right"}


def rows_of(results: dict, sizes: list[int]) -> list[dict]:
    """Per backend, each question's times at each size, its growth and verdict; then the build times."""
    small, large = str(sizes[0]), str(sizes[-1])
    rows = []
    for name, by_size in results.items():
        for what in TIMED:
            growth = by_size[large][what] / by_size[small][what]
            wrong = [str(s) for s in sizes if what in CHECKS and not by_size[str(s)][CHECKS[what]]]
            right = ("" if what not in CHECKS else "WRONG at " + ", ".join(wrong) if wrong
                     else "right at every size")
            rows.append({"backend": name, "what": what, "times": [by_size[str(s)][what] for s in sizes],
                         "growth": growth, "met": growth <= TARGET, "answers": right})
        rows.append({"backend": name, "what": "build", "times": [by_size[str(s)]["build s"] for s in sizes]})
    return rows


def report(rows: list[dict], sizes: list[int]) -> None:
    print(f"\n{'backend':10} {'what':16} " + " ".join(f"{int(s):>9,}" for s in sizes)
          + f" {'growth':>7}  target <= {TARGET}x; answers")
    for row in rows:
        if row["what"] == "build":
            print(f"{row['backend']:10} {'build':16} " + " ".join(f"{t:8.0f}s" for t in row["times"])
                  + "  (runs and versions added to reach the size)")
        else:
            print(f"{row['backend']:10} {row['what']:16} " + " ".join(f"{t:8.2f}s" for t in row["times"])
                  + f" {row['growth']:6.2f}x  {'met' if row['met'] else 'NOT met'}; {row['answers']}")


def markdown(rows: list[dict], sizes: list[int]) -> list[str]:
    """The page's section body: the same figures as the printout, as a Markdown table."""
    body = []
    for row in rows:
        if row["what"] == "build":
            body.append([row["backend"], "build", *(f"{t:.0f} s" for t in row["times"]), "", "",
                         "adding the runs and versions"])
        else:
            body.append([row["backend"], row["what"], *(f"{t:.2f} s" for t in row["times"]),
                         f"{row['growth']:.2f}x", "met" if row["met"] else "**NOT met**", row["answers"]])
    return [*wrap(f"Seconds at each size of the store (runs and versions); growth: the time at {sizes[-1]:,} "
                  f"over the time at {sizes[0]:,}, target <= {TARGET}x."), "",
            *table(["backend", "what", *(f"{s:,}" for s in sizes), "growth", "target", "answers"], body,
                   right=set(range(2, 3 + len(sizes))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--backends", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "store.json")
    parser.add_argument("--no-docs", action="store_true",
                        help=f"a quick look: leave {PAGE.relative_to(ROOT)} as it is")
    args = parser.parse_args()
    results, ran = {}, machine()  # what is measured: the working tree's files as they are now
    with tempfile.TemporaryDirectory(prefix="store-benchmark-") as work:
        work = Path(work)
        work.chmod(0o755)  # PostgreSQL's own user must enter the project (`make server`)
        env = environment(work)
        for name in args.backends:
            project = project_copy(work / name, env)
            (work / name).chmod(0o755)
            print(f"{name}: dvc repro {STAGE} (cold) ...", flush=True)
            timed(["dvc", "repro", STAGE], project, env)
            results[name] = {str(s): row for s, row in backend(name, project, env, args.sizes, work).items()}
    rows = rows_of(results, args.sizes)
    report(rows, args.sizes)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {args.json}")
    if not args.no_docs:
        publish("store", markdown(rows, args.sizes), ran, "store.py")


if __name__ == "__main__":
    main()
