"""Pipeline benchmark: where the time of `dvc repro` and `dvc exp run` goes, against fixed references.

Measured in one run, on the real Fashion-MNIST files, in a temporary git copy of the project:

  import torch   `python -c "import torch"`, the median of 5 (the unit of the overhead target)
  cold repro     `dvc repro train` from nothing: every train stage and what it depends on
                 (download included; the sweeps are benchmarks/sweep.py's)
  no-op repro    `dvc repro train` again, with nothing changed
  exp run        `dvc exp run -S train.softmax_nn.lr=0.1`, with its stage's breakdown; then the
                 same with lr 0.2 and 0.3, and the medians of the three
  lesson loop    the lesson's softmax regression: torchvision FashionMNIST + ToTensor +
                 DataLoader(shuffle=True) + nn.Linear + CrossEntropyLoss + optim.SGD, 10 epochs,
                 train loss/accuracy and test accuracy per epoch, data loading included
  project loop   this project's data load + training.train for softmax_nn, the same settings
  numerics       the project loop again in two fresh processes: with the pinned numerics
                 (regression/numerics.py: one thread, AVX2 kernels, MKL's portable path) and
                 with the machine's own (every core, torch's and MKL's own choice of kernels)

Every stage reports its phases and peak RSS through $STAGE_TIMINGS (regression.timing.Phases).
Targets (ratios measured in the same run, since the machine is noisy):
  a model stage's wall time minus training and evaluation <= 2.5 x import torch
  a one-param `dvc exp run` <= 4.5 x import torch
  cold repro <= 0.75 x lesson loop; no-op repro <= 1 s
  lesson loop / project loop >= 15 x, final test accuracies within 0.5 points
  peak RSS of every stage, and of the largest process it started (column "child"), <= 1 GiB
  (1024 MiB; RSS is shown in MiB)
It prints one table and writes the figures as JSON, and the same tables, with the machine, the date
and the commit, into its section of docs/benchmarks.md (benchmarks/tables.py; not with --no-docs,
for a quick look); it exits 0 whether or not a target is met.

Run from the project root:  .venv/bin/python benchmarks/pipeline.py [--json benchmarks/results.json]
[--no-docs]
(`--project-loop pinned|native --data <folder>` is the benchmark timing one loop in a process of its own.)
(`make benchmark`). Fashion-MNIST comes from $FASHION_MNIST_SOURCE, else ../shared/data/fashion-mnist.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tables import PAGE, machine, publish, table, wrap

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXP_LEARNING_RATES = ("0.1", "0.2", "0.3")  # three equal experiments: this machine is noisy
# The lesson's pipeline: the train stages and all they depend on (the sweeps are timed by
# benchmarks/sweep.py; a sweep of real size takes minutes, and would drown these figures).
LESSON_STAGES = ("train",)
TARGETS = {"overhead_x_import_torch": 2.5, "exp_run_x_import_torch": 4.5, "cold_repro_x_lesson": 0.75,
           "noop_repro_s": 1.0,
           "lesson_x_project": 15.0, "accuracy_gap": 0.005, "peak_rss_mb": 1024.0}


def timed(command: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return seconds


def project_copy(dest: Path, env: dict) -> Path:
    """The files git tracks, committed in a new repo (dvc exp run needs a commit)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "benchmark"]):
        subprocess.run(command, cwd=dest, env=env, check=True, capture_output=True)
    return dest


def stage_timings(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_lesson(raw: Path, p, tmp: str) -> dict:
    """The lesson's concise softmax regression, data loading included."""
    import torch
    from torch import nn, optim
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    root = Path(tmp) / "FashionMNIST" / "raw"  # where torchvision looks for the IDX files
    root.mkdir(parents=True)
    for file in raw.iterdir():
        (root / file.name).symlink_to(file.resolve())
    torch.manual_seed(p.seed)
    to_tensor = transforms.ToTensor()
    train_set = datasets.FashionMNIST(tmp, train=True, transform=to_tensor, download=False)
    test_set = datasets.FashionMNIST(tmp, train=False, transform=to_tensor, download=False)
    train_iter = DataLoader(train_set, batch_size=p.batch_size, shuffle=True, num_workers=0)
    test_iter = DataLoader(test_set, batch_size=p.batch_size, shuffle=False, num_workers=0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    nn.init.normal_(net[1].weight, std=p.init_std)
    nn.init.zeros_(net[1].bias)
    loss_fn = nn.CrossEntropyLoss()
    trainer = optim.SGD(net.parameters(), lr=p.lr)
    for epoch in range(1, p.epochs + 1):
        net.train()
        loss_sum, correct, n = 0.0, 0, 0
        for X, y in train_iter:
            y_hat = net(X)
            loss = loss_fn(y_hat, y)
            trainer.zero_grad()
            loss.backward()
            trainer.step()
            loss_sum += loss.item() * len(y)
            correct += (y_hat.argmax(dim=1) == y).sum().item()
            n += len(y)
        net.eval()
        with torch.no_grad():
            test_correct = sum((net(X).argmax(dim=1) == y).sum().item() for X, y in test_iter)
        test_accuracy = test_correct / len(test_set)
        print(f"  lesson epoch {epoch}: train loss {loss_sum / n:.4f}, train acc {correct / n:.4f}, "
              f"test acc {test_accuracy:.4f}", flush=True)
    return {"test_accuracy": test_accuracy}


def run_project(dataset: Path, p) -> dict:
    """This project's data load and training of softmax_nn, as its stage does them."""
    from regression.data import load_dataset
    from regression.models import MODELS
    from regression.training import as_splits, new_model, train

    spec = MODELS["softmax_nn"]
    meta, arrays = load_dataset(dataset)
    splits = as_splits(arrays, spec)
    model, _ = new_model("softmax_nn", splits["train"], tuple(meta["classes"]), p)
    history, _ = train("softmax_nn", spec, model, splits, p)
    return history[-1]


def project_loop_process(dataset: Path, numerics: str) -> None:
    """The project loop in this process, with the pinned numerics or the machine's own; prints JSON."""
    own = dict(os.environ)  # before importing the package pins the numerics
    sys.path.insert(0, str(dataset.parents[1] / "src"))
    from regression.numerics import PINNED_ENVIRONMENT
    from regression.params import load_params

    if numerics == "native":  # undo the pinning before torch loads: the machine's own settings
        for key in PINNED_ENVIRONMENT:
            if key in own:
                os.environ[key] = own[key]
            else:
                os.environ.pop(key)
    import torch
    import torch._dynamo  # noqa: F401 - the first optim.SGD step imports it: charged to neither loop

    if numerics == "native":
        torch.set_num_threads(os.cpu_count())
    p = load_params(dataset.parents[1] / "params.yaml").train["softmax_nn"]
    start = time.perf_counter()
    result = run_project(dataset, p)
    print(json.dumps({"seconds": time.perf_counter() - start, "test_accuracy": result["test_accuracy"],
                      "threads": torch.get_num_threads(),
                      "capability": torch.backends.cpu.get_cpu_capability()}))


def project_loop_in_process(dataset: Path, numerics: str, env: dict) -> dict:
    command = [sys.executable, __file__, "--project-loop", numerics, "--data", str(dataset)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def measure(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    shared = ROOT.parent / "shared" / "data" / "fashion-mnist"
    env.setdefault("FASHION_MNIST_SOURCE", str(shared))
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(key, "benchmark")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(key, "benchmark@example.com")
    project = project_copy(work / "project", env)
    sys.path.insert(0, str(project / "src"))
    from regression.params import load_params

    figures = {}

    print("import torch ...", flush=True)
    figures["import_torch_s"] = statistics.median(
        timed([sys.executable, "-c", "import torch"], project, env) for _ in range(5))

    print("cold dvc repro ...", flush=True)
    env["STAGE_TIMINGS"] = str(work / "cold.jsonl")
    figures["cold_repro_s"] = timed(["dvc", "repro", *LESSON_STAGES], project, env)
    figures["cold_stages"] = stage_timings(work / "cold.jsonl")

    print("no-op dvc repro ...", flush=True)
    env["STAGE_TIMINGS"] = str(work / "noop.jsonl")
    figures["noop_repro_s"] = timed(["dvc", "repro", *LESSON_STAGES], project, env)
    figures["noop_stages_run"] = len(stage_timings(work / "noop.jsonl"))
    # The experiments' baseline: the results, committed (nothing new when the committed dvc.lock
    # and metrics were reproduced byte for byte).
    subprocess.run(["git", "add", "-A"], cwd=project, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "results", "--allow-empty"], cwd=project, env=env, check=True)

    committed = load_params(project / "params.yaml").train["softmax_nn"]  # before experiments change it
    figures["exp_runs"] = []
    for lr in EXP_LEARNING_RATES:
        print(f"dvc exp run -S train.softmax_nn.lr={lr} ...", flush=True)
        env["STAGE_TIMINGS"] = str(work / f"exp-{lr}.jsonl")
        command = ["dvc", "exp", "run", "-S", f"train.softmax_nn.lr={lr}", *LESSON_STAGES]
        seconds = timed(command, project, env)
        # the train stage's (the params stage runs too: params.yaml changed)
        [stage] = [s for s in stage_timings(work / f"exp-{lr}.jsonl") if s["stage"] == "train@softmax_nn"]
        figures["exp_runs"].append({"lr": lr, "seconds": seconds, "stage": stage})

    import torch._dynamo  # noqa: F401 - the first optim.SGD step imports it (~1 s): charge it to neither loop
    import torchvision  # noqa: F401 - the lesson's import, done before either loop is timed

    p = committed
    print("project loop ...", flush=True)
    start = time.perf_counter()
    project_result = run_project(project / "data/fashion-mnist", p)
    figures["project_loop_s"] = time.perf_counter() - start
    figures["project_accuracy"] = project_result["test_accuracy"]
    print("lesson loop ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        lesson_result = run_lesson(project / "data/raw/fashion-mnist", p, tmp)
        figures["lesson_loop_s"] = time.perf_counter() - start
    figures["lesson_accuracy"] = lesson_result["test_accuracy"]

    print("project loop, pinned and the machine's own numerics ...", flush=True)
    for numerics in ("pinned", "native"):
        figures[f"{numerics}_loop"] = project_loop_in_process(project / "data/fashion-mnist", numerics, env)
    return figures


def overhead(stage: dict) -> float:
    """A model stage's wall time minus its training and evaluation."""
    return stage["wall"] - stage["phases"].get("training", 0.0) - stage["phases"].get("evaluation", 0.0)


def results(f: dict) -> dict:
    """The tables and the targets' verdicts, from the figures: what both the printout and the page show."""
    torch_s, lesson_s = f["import_torch_s"], f["lesson_loop_s"]
    exp_s = statistics.median(e["seconds"] for e in f["exp_runs"])
    exp_training_s = statistics.median(e["stage"]["phases"]["training"] for e in f["exp_runs"])
    rows = [("import torch", f"{torch_s:.2f} s", ""),
            ("lesson loop (10 epochs)", f"{lesson_s:.2f} s", f"test accuracy {f['lesson_accuracy']:.4f}"),
            ("project loop (10 epochs)", f"{f['project_loop_s']:.2f} s",
             f"test accuracy {f['project_accuracy']:.4f}; lesson / project "
             f"{lesson_s / f['project_loop_s']:.1f}x (target >= {TARGETS['lesson_x_project']:.0f}x)"),
            ("cold dvc repro", f"{f['cold_repro_s']:.2f} s",
             f"{f['cold_repro_s'] / lesson_s:.2f}x lesson loop "
             f"(target <= {TARGETS['cold_repro_x_lesson']}x)"),
            ("no-op dvc repro", f"{f['noop_repro_s']:.2f} s",
             f"{f['noop_stages_run']} stages ran (target <= {TARGETS['noop_repro_s']:.0f} s)"),
            *((f"dvc exp run lr={e['lr']}", f"{e['seconds']:.2f} s", "") for e in f["exp_runs"]),
            ("  median", f"{exp_s:.2f} s",
             f"{exp_s / torch_s:.2f}x import torch (target <= {TARGETS['exp_run_x_import_torch']}x); "
             f"training {exp_training_s:.2f} s = "
             f"{exp_training_s / f['project_loop_s']:.2f}x project loop"),
            *((f"project loop, {label}", f"{f[key]['seconds']:.2f} s",
               f"{f[key]['threads']} thread(s), {f[key]['capability']}; test accuracy "
               f"{f[key]['test_accuracy']:.4f}") for key, label in (("pinned_loop", "pinned numerics"),
                                                                   ("native_loop", "machine's own"))),
            ("  machine's own / pinned",
             f"{f['native_loop']['seconds'] / f['pinned_loop']['seconds']:.2f}x", "")]

    stages, worst_rss, overheads = [], 0.0, []
    exp_stages = [dict(e["stage"], stage=f"{e['stage']['stage']} (exp lr={e['lr']})") for e in f["exp_runs"]]
    for stage in f["cold_stages"] + exp_stages:
        extra = overhead(stage) if "training" in stage["phases"] else None  # a model stage's
        worst_rss = max(worst_rss, stage["peak_rss_mb"], stage.get("child_peak_rss_mb", 0.0))
        if extra is not None:
            overheads.append(extra / torch_s)
        stages.append({"stage": stage["stage"], "wall": stage["wall"], "startup": stage["startup"],
                       "overhead": extra, "x torch": None if extra is None else extra / torch_s,
                       "rss": stage["peak_rss_mb"], "child": stage.get("child_peak_rss_mb", 0.0),
                       "phases": {k: v for k, v in stage["phases"].items() if v >= 0.005}})

    median_overhead = statistics.median(overheads)
    checks = {
        "model stage overhead (median) <= 2.5x import torch":
            median_overhead <= TARGETS["overhead_x_import_torch"],
        "dvc exp run (median) <= 4.5x import torch": exp_s / torch_s <= TARGETS["exp_run_x_import_torch"],
        "cold repro <= 0.75x lesson loop": f["cold_repro_s"] / lesson_s <= TARGETS["cold_repro_x_lesson"],
        "no-op repro <= 1 s and runs nothing": f["noop_repro_s"] <= TARGETS["noop_repro_s"]
        and f["noop_stages_run"] == 0,
        "lesson / project loop >= 15x": lesson_s / f["project_loop_s"] >= TARGETS["lesson_x_project"],
        "accuracy within 0.5 points":
            abs(f["lesson_accuracy"] - f["project_accuracy"]) <= TARGETS["accuracy_gap"],
        "peak RSS <= 1 GiB": worst_rss <= TARGETS["peak_rss_mb"],
    }
    summary = (f"model-stage overhead: median {median_overhead:.2f}x import torch over {len(overheads)} "
               f"stage runs, worst {max(overheads):.2f}x; worst peak RSS {worst_rss:.0f} MiB")
    return {"rows": rows, "stages": stages, "summary": summary, "checks": checks}


def report(r: dict) -> None:
    print(f"\n{'what':34} {'time':>9}  notes")
    for what, time_s, notes in r["rows"]:
        print(f"{what:34} {time_s:>9}  {notes}")

    print(f"\n{'stage (cold repro; exp run last)':34} {'wall s':>7} {'start':>6} {'overhead':>9} "
          f"{'x torch':>7} {'RSS MiB':>7} {'child':>6}  phases (s)")
    for s in r["stages"]:
        extra, times = ("", "") if s["overhead"] is None else (f"{s['overhead']:.2f}", f"{s['x torch']:.2f}")
        phases = ", ".join(f"{k} {v:.2f}" for k, v in s["phases"].items())
        print(f"{s['stage']:34} {s['wall']:7.2f} {s['startup']:6.2f} {extra:>9} {times:>7} "
              f"{s['rss']:7.0f} {s['child']:6.0f}  {phases}")

    print(f"\n{r['summary']}")
    for name, met in r["checks"].items():
        print(f"  {'met    ' if met else 'NOT met'}  {name}")


def markdown(r: dict) -> list[str]:
    """The page's section body: the same figures as the printout, as Markdown tables (a note's target
    in a column of its own)."""
    rows = []
    for what, time_s, notes in r["rows"]:
        target = re.search(r" \(target ([^)]*)\)", notes)
        rows.append([what.strip(), time_s, notes.replace(target[0], "") if target else notes,
                     target[1] if target else ""])
    what = table(["what", "time", "notes", "target"], rows, right={1})
    phases = list(dict.fromkeys(k for s in r["stages"] for k in s["phases"]))  # in the order they ran

    def number(value, digits=2):
        return "" if value is None else f"{value:.{digits}f}"

    stages = table(["stage", "wall", "startup", "other", "x torch", "RSS", "child", *phases],
                   [[s["stage"].replace(" (exp ", ", exp ").rstrip(")"), number(s["wall"]),
                     number(s["startup"]), number(s["overhead"]), number(s["x torch"]), number(s["rss"], 0),
                     number(s["child"], 0),
                     *(number(s["phases"].get(k)) for k in phases)] for s in r["stages"]],
                   right=set(range(1, 7 + len(phases))))
    return [*what, "",
            *wrap("Each stage of the cold `dvc repro train`, then the stage of each `dvc exp run`: seconds "
                  "(other: wall time minus training and evaluation; x torch: other over `import torch`), "
                  "and peak RSS in MiB (child: its largest child process)."), "",
            *stages, "", *wrap(r["summary"] + "."), "",
            *(f"- {'met' if met else '**NOT met**'}: {name}" for name, met in r["checks"].items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results.json",
                        help="where to write the figures")
    parser.add_argument("--no-docs", action="store_true",
                        help=f"a quick look: leave {PAGE.relative_to(ROOT)} as it is")
    parser.add_argument("--project-loop", choices=("pinned", "native"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.project_loop:
        return project_loop_process(args.data, args.project_loop)
    ran = machine()  # what is measured: the working tree's files as they are now
    with tempfile.TemporaryDirectory(prefix="pipeline-benchmark-") as work:
        figures = measure(Path(work))
    r = results(figures)
    report(r)
    args.json.write_text(json.dumps({"figures": figures, "targets": TARGETS, "met": r["checks"]}, indent=2)
                         + "\n")
    print(f"figures written to {args.json}")
    if not args.no_docs:
        publish("pipeline", markdown(r), ran, "pipeline.py")


if __name__ == "__main__":
    main()
