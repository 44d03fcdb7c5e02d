"""Sweep benchmark: the sweep stage on Dask against DVC's queue on the same grid, scikit-learn beside them.

Measured in one run, on the real Fashion-MNIST files, in a temporary git copy of the project,
for each grid (params.yaml's `sweep.softmax_nn`, and a grid of short trials, 8 x 10 epochs):

  dask, N workers   `stages/sweep.py softmax_nn --workers N` (N = 1, 2): the stage's wall time
                    (cluster start, trials, refit on all the training images, MLflow), and its
                    trials' wall time (phase "trials" in $STAGE_TIMINGS)
  dvc queue -j 2    the same grid queued as DVC experiments of train@softmax_nn (DVC's grid
                    syntax, the same validation split through datasets.fashion-mnist.validation_size), run by
                    `dvc exp run --run-all -j 2`
  scikit-learn      LogisticRegression(C) (L-BFGS, L2) fitted on the 60,000 training images
                    scaled to [0, 1]; its fit time and test accuracy

Trials per minute are the grid's trials over the wall time of running them (the queue's whole
run; the stage's trials phase). Target: dask on 2 workers >= 2 x the queue's trials per minute.
It prints one table and writes the figures as JSON, and the same tables, with the machine, the date
and the commit (it measures the commit: a `git clone`), into its section of docs/benchmarks.md
(benchmarks/tables.py; not with --no-docs); it exits 0 whether or not the target is met.

Run from the project root:  .venv/bin/python benchmarks/sweep.py [--json benchmarks/sweep.json]
[--no-docs]
Fashion-MNIST comes from $FASHION_MNIST_SOURCE, else ../shared/data/fashion-mnist.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tables import PAGE, machine, publish, table, wrap

ROOT = Path(__file__).resolve().parents[1]
SHORT_GRID = {"lr": [0.05, 0.1, 0.2, 0.5], "epochs": [10], "batch_size": [100, 500], "weight_decay": [0],
              "schedule": ["constant"]}


def sh(command: list[str], cwd: Path, env: dict) -> float:
    """Run `command`, failing loudly; its wall time."""
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(command)} exited {result.returncode}:\n"
                 f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return time.monotonic() - started


def copy_project(dest: Path, env: dict) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    sh(["dvc", "repro", "prepare"], dest, env)
    return dest


def queue(project: Path, grid: dict, validation_size: int, env: dict) -> float:
    """The grid as DVC experiments of train@softmax_nn on DVC's queue, 2 jobs: the run's wall time."""
    key = "train.softmax_nn"
    sets = [f"{key}.{name}={','.join(map(str, values))}" for name, values in grid.items()]
    sh(["dvc", "exp", "run", "--queue", "train@softmax_nn",
        "-S", f"datasets.fashion-mnist.validation_size={validation_size}",
        *itertools.chain.from_iterable(("-S", s) for s in sets)], project, env)
    return sh(["dvc", "exp", "run", "--run-all", "-j", "2"], project, env)


def dask_sweep(project: Path, grid: dict, workers: int, env: dict) -> tuple[float, float, dict]:
    """The stage on `workers` local workers: (wall time, trials' wall time, its metrics)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["sweep"]["softmax_nn"]["grid"] = grid
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    timings = project / "timings.jsonl"
    timings.unlink(missing_ok=True)
    out = project / "bench" / str(workers)
    wall = sh([str(ROOT / ".venv/bin/python"), "stages/sweep.py", "softmax_nn",
               "--data", "data/fashion-mnist", "--model-file", str(out / "model.pt"),
               "--metrics", str(out / "metrics.json"), "--trials", str(out / "trials.csv"),
               "--workers", str(workers)],
              project, env | {"PYTHONPATH": "src", "STAGE_TIMINGS": str(timings)})
    subprocess.run(["git", "checkout", "params.yaml"], cwd=project, check=True)
    phases = json.loads(timings.read_text().splitlines()[-1])["phases"]
    return wall, phases["trials"], json.loads((out / "metrics.json").read_text())


def scikit_learn(data: Path) -> list[dict]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    X = np.load(data / "train_X.npy").reshape(-1, 784) / 255.0
    y = np.load(data / "train_y.npy")
    X_test, y_test = np.load(data / "test_X.npy").reshape(-1, 784) / 255.0, np.load(data / "test_y.npy")
    rows = []
    for C in (1.0, 0.1):
        started = time.monotonic()
        model = LogisticRegression(C=C, max_iter=1000).fit(X, y)
        rows.append({"C": C, "fit_seconds": time.monotonic() - started,
                     "test_accuracy": float((model.predict(X_test) == y_test).mean())})
    return rows


RUNNERS = ("dvc queue -j 2", "dask, 1 workers", "dask, 2 workers")


def report(results: dict) -> None:
    for name, row in results["grids"].items():
        print(f"\n{name}: {row['trials']} trials")
        print(f"  {'':18} {'wall s':>8} {'trials s':>9} {'trials/min':>11} {'refit test acc':>15}")
        for key in RUNNERS:
            r = row[key]
            print(f"  {key:18} {r['wall']:8.1f} {r.get('trials_wall', r['wall']):9.1f} "
                  f"{r['trials_per_minute']:11.2f} "
                  f"{r.get('refit_test_accuracy', float('nan')):15.4f}")
        speed_up = row["speed-up, dask 2 workers / queue"]
        verdict = "met" if speed_up >= 2 else "NOT met"
        print(f"  dask on 2 workers / queue: {speed_up:.2f} x (target >= 2: {verdict})")
    for r in results["scikit-learn"]:
        print(f"scikit-learn LogisticRegression C={r['C']}: test accuracy {r['test_accuracy']:.4f}, "
              f"fit {r['fit_seconds']:.1f} s")


def markdown(results: dict) -> list[str]:
    """The page's section body: the same figures as the printout, as Markdown tables."""
    lines = []
    for name, row in results["grids"].items():
        grid = "; ".join(f"{key} {', '.join(map(str, values))}" for key, values in row["grid"].items())
        speed_up = row["speed-up, dask 2 workers / queue"]
        rows = [[key, f"{r['wall']:.1f}", f"{r.get('trials_wall', r['wall']):.1f}",
                 f"{r['trials_per_minute']:.2f}",
                 f"{r['refit_test_accuracy']:.4f}" if "refit_test_accuracy" in r else ""]
                for key, r in ((key, row[key]) for key in RUNNERS)]
        lines += [*wrap(f"**{name}**: {row['trials']} trials ({grid})."), "",
                  *table(["runner", "wall s", "trials s", "trials/min", "refit test acc"], rows,
                         right={1, 2, 3, 4}),
                  "", *wrap(f"Dask on 2 workers / the queue: {speed_up:.2f}x trials per minute (target >= 2: "
                            f"{'met' if speed_up >= 2 else '**NOT met**'})."), ""]
    lines += ["scikit-learn's `LogisticRegression` on the same training images, as a reference:", "",
              *table(["C", "fit s", "test acc"],
                     [[f"{r['C']}", f"{r['fit_seconds']:.1f}", f"{r['test_accuracy']:.4f}"]
                      for r in results["scikit-learn"]], right={0, 1, 2})]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "sweep.json")
    parser.add_argument("--no-docs", action="store_true",
                        help=f"a quick look: leave {PAGE.relative_to(ROOT)} as it is")
    args = parser.parse_args()
    source = os.environ.get("FASHION_MNIST_SOURCE") or str(ROOT.parent / "shared" / "data" / "fashion-mnist")
    env = os.environ | {"FASHION_MNIST_SOURCE": source, "MLFLOW_DISABLE_TELEMETRY": "true",
                        "PATH": f"{ROOT / '.venv/bin'}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if not k.startswith(("MLFLOW_TRACKING_URI", "DASK_SCHEDULER"))}
    sweep = yaml.safe_load((ROOT / "params.yaml").read_text())["sweep"]["softmax_nn"]
    results, ran = {"grids": {}}, machine(working_tree=False)  # what is measured: the commit, cloned
    with tempfile.TemporaryDirectory(prefix="sweep-benchmark-") as tmp:
        project = copy_project(Path(tmp) / "project", env)
        for name, grid in (("params.yaml", sweep["grid"]), ("short trials", SHORT_GRID)):
            trials = len(list(itertools.product(*grid.values())))
            row = {"grid": grid, "trials": trials}
            queue_wall = queue(project, grid, sweep["validation_size"], env)
            row["dvc queue -j 2"] = {"wall": queue_wall, "trials_per_minute": 60 * trials / queue_wall}
            for workers in (1, 2):
                wall, trials_wall, metrics = dask_sweep(project, grid, workers, env)
                row[f"dask, {workers} workers"] = {"wall": wall, "trials_wall": trials_wall,
                                                   "trials_per_minute": 60 * trials / trials_wall,
                                                   "refit_test_accuracy": metrics["test_accuracy"]}
            row["speed-up, dask 2 workers / queue"] = (row["dask, 2 workers"]["trials_per_minute"]
                                                       / row["dvc queue -j 2"]["trials_per_minute"])
            results["grids"][name] = row
        results["scikit-learn"] = scikit_learn(project / "data" / "fashion-mnist")

    report(results)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{args.json} written")
    if not args.no_docs:
        publish("sweep", markdown(results), ran, "sweep.py")


if __name__ == "__main__":
    main()
