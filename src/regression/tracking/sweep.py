"""A grid of experiments on DVC's queue, ranked by validation accuracy; the best becomes `champion`.

Usage: python -m regression.tracking.sweep [--model softmax_nn] [--lr 0.05,0.1,0.2] [--epochs 30]
           [--batch-size 100,500] [--validation-size 10000] [--jobs 2]        (`make sweep`)

Every combination is queued with DVC's grid syntax (`dvc exp run --queue -S 'k=a,b'`), from
the committed params.yaml (so a sweep never inherits an experiment applied to the workspace),
with a validation split held out so the choice is not made on the test set. Only the model's
stage and what it depends on run. The queue runs on `--jobs` workers; then every experiment
must have exactly one finished MLflow run, and the ranking, the champion and the sweep's wall
time are printed.
"""

import argparse
import os
import re
import subprocess
import sys
import time

from regression.params import read_yaml
from regression.tracking.compare import table
from regression.tracking.naming import EXPERIMENT_TAG, registered_name, runs_of
from regression.tracking.registry import promote, rank_key
from regression.tracking.store import opened

POLL_SECONDS = 2
QUEUED = re.compile(r"Queued experiment '([^']+)' for future execution")


class SweepError(Exception):
    """The sweep cannot start or did not give one finished run per experiment."""


def dvc(*args: str, env: dict | None = None) -> str:
    result = subprocess.run(["dvc", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SweepError(f"dvc {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def check_committed() -> None:
    """Queued runs start from the workspace: refuse one whose params or pipeline differ from git."""
    changed = subprocess.run(["git", "status", "--porcelain", "--", "params.yaml", "dvc.yaml"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if changed:
        raise SweepError("params.yaml or dvc.yaml differ from the last commit, and queued experiments "
                         "would start from them: commit them, or `git checkout params.yaml dvc.yaml` "
                         "(an applied experiment stays in `dvc exp show`)")


def worker_environment(jobs: int) -> dict:
    """The workers' environment: the cores shared out between them (torch's threads of several
    processes fighting over the same cores make each many times slower)."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}


def queue(args) -> list[str]:
    """Queue the grid; the names DVC gave the experiments."""
    key = f"train.{args.model}"
    output = dvc("exp", "run", "--queue", f"train@{args.model}",
                 "-S", f"prepare.validation_size={args.validation_size}",
                 "-S", f"{key}.lr={args.lr}", "-S", f"{key}.epochs={args.epochs}",
                 "-S", f"{key}.batch_size={args.batch_size}")
    return QUEUED.findall(output)


def run_queue(names: list[str], jobs: int) -> dict[str, str]:
    """Start `jobs` workers and poll `dvc queue status` until none of `names` is queued or
    running; their final statuses.

    DVC's workers stop by themselves a minute after the queue runs dry; one still stopping when
    the queue is started again keeps a new one from starting, and then leaves tasks queued with
    no worker. So whenever tasks wait and no worker is up, the workers are started again.
    """
    while True:
        output = dvc("queue", "status")
        statuses = {}
        for line in output.splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[1] in names:
                statuses[fields[1]] = fields[-1]
        if len(statuses) == len(names) and not {"Queued", "Running"} & set(statuses.values()):
            return statuses
        if "Queued" in statuses.values() and "Worker status: 0 active, 0 idle" in output:
            dvc("queue", "start", "-j", str(jobs), env=worker_environment(jobs))
        time.sleep(POLL_SECONDS)


def failure_tail(name: str, lines: int = 8) -> str:
    """The last lines of a failed experiment's log (`dvc queue logs`), indented."""
    result = subprocess.run(["dvc", "queue", "logs", name], capture_output=True, text=True, check=False)
    tail = (result.stdout + result.stderr).strip().splitlines()[-lines:]
    return "".join(f"\n    {line}" for line in tail)


def ranking(client, experiment_id: str, model: str, names: list[str]) -> tuple[list, list[str]]:
    """The sweep's runs, best validation accuracy first, and what is wrong with them if anything."""
    runs = [r for r in runs_of(client, experiment_id, model, max_results=50000)
            if r.data.tags.get(EXPERIMENT_TAG) in names]
    problems = []
    for name in names:
        mine = [r for r in runs if r.data.tags[EXPERIMENT_TAG] == name]
        finished = [r for r in mine if r.info.status == "FINISHED"]
        if len(mine) != 1 or len(finished) != 1:
            problems.append(f"{name}: {len(mine)} MLflow runs, {len(finished)} finished (expected exactly 1)")
    ranked = sorted(runs, key=lambda r: rank_key(r.data.metrics))
    return ranked, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="softmax_nn")
    parser.add_argument("--lr", default="0.05,0.1,0.2", help="comma-separated values (DVC's grid syntax)")
    parser.add_argument("--epochs", default="30")
    parser.add_argument("--batch-size", default="100,500")
    parser.add_argument("--validation-size", type=int, default=10000)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if (experiment_id := opened()) is None:  # fails fast on a missing server; sets up a new store once
        return 1
    try:
        check_committed()
        started = time.monotonic()
        names = queue(args)
        print(f"queued {len(names)} experiments: {', '.join(names)}", flush=True)
        statuses = run_queue(names, args.jobs)
        wall = time.monotonic() - started
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from mlflow import MlflowClient

    client = MlflowClient()
    ranked, problems = ranking(client, experiment_id, args.model, names)
    problems += [f"{name}: DVC says {status} (`dvc queue logs {name}`):{failure_tail(name)}"
                 for name, status in statuses.items() if status != "Success"]
    print("\n" + "\n".join(table(ranked)))
    print(f"\n{len(names)} experiments on {args.jobs} workers in {wall:.0f} s; "
          f"{len(ranked)} MLflow runs, {len(problems)} problems")
    if ranked:
        dataset = read_yaml("params.yaml")["train"][args.model]["dataset"]
        print(promote(client, registered_name(dataset, args.model)))
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
