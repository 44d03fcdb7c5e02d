"""The sweep: its search space, choice rule and table; schedules and weight decay; and the stage
on Dask, locally and on a real cluster of separate processes (a scheduler and two `make worker`)."""

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from projects import BIN, PROJECT, TINY_SWEEP, USER_NUMERICS, environment, free_port, read_json, stage_command
from regression.params import ParamsError, load_params
from regression.params_schema import SweepParams, TrainParams
from regression.search import DIVERGED, FINISHED, choose, search_base, setting_text, table_bytes, trials

ENTRY = {"dataset": "fashion-mnist", "seed": 0, "lr": 0.05, "batch_size": 100, "epochs": 10, "init_std": 0.01}
BASE = search_base("softmax_nn", ENTRY)
PARAMS = TrainParams(architecture="softmax_nn", **ENTRY)


def sweep_params(**grid) -> SweepParams:
    space = {"lr": [0.1], "epochs": [1], "batch_size": [10], "weight_decay": [0], "schedule": ["constant"]}
    return SweepParams(dataset="fashion-mnist", validation_size=10, seed=0, sample=0, grid=space | grid)


def test_a_trials_settings_read_as_one_line_in_their_order():
    """As the sweep's log and its run's tag show the chosen trial."""
    settings = {"lr": 0.4, "epochs": 60, "batch_size": 128, "weight_decay": 0.0001, "schedule": "cosine"}
    assert setting_text(settings) == "lr=0.4 epochs=60 batch_size=128 weight_decay=0.0001 schedule=cosine"

def test_trials_are_every_combination_in_grid_order_over_the_models_params():
    found = trials(BASE, sweep_params(lr=[0.1, 0.2], weight_decay=[0, 0.001],
                                      schedule=["constant", "cosine"]))
    assert len(found) == 8
    assert [(t["lr"], t["weight_decay"], t["schedule"]) for t in found[:3]] == [
        (0.1, 0, "constant"), (0.1, 0, "cosine"), (0.1, 0.001, "constant")]  # the last list varies fastest
    assert {(t["seed"], t["init_std"], t["epochs"], t["batch_size"], t["architecture"]) for t in found} == {
        (0, 0.01, 1, 10, "softmax_nn")}


def test_a_sweep_takes_from_its_model_all_but_what_it_searches_and_its_data():
    """What the sweep stage depends on (its base, written by the params stage) is what its trials take
    from train.<model>: a searched key or the dataset (the sweep names its own) changes nothing, an
    architecture's own param does."""
    entry = ENTRY | {"hidden": 256}
    base = search_base("mlp", entry)
    assert base == {"architecture": "mlp", "seed": 0, "init_std": 0.01, "hidden": 256}
    assert search_base("mlp", entry | {"lr": 0.3, "epochs": 2, "schedule": "step", "dataset": "digits"}) == base
    assert search_base("mlp", entry | {"hidden": 512}) != base
    assert search_base("mlp_wide", entry | {"architecture": "mlp"})["architecture"] == "mlp"
    [trial] = trials(base, sweep_params())
    assert {key: trial[key] for key in entry if key in base} == {key: entry[key] for key in entry if key in base}
    assert trial["dataset"] == "fashion-mnist"  # the sweep's own
    [trial] = trials(base, sweep_params().model_copy(update={"dataset": "digits"}))
    assert trial["dataset"] == "digits"


def test_a_sample_is_seeded_in_grid_order_and_never_larger_than_the_grid():
    space = {"lr": [0.1, 0.2, 0.3, 0.4], "epochs": [1, 2, 3]}
    every = trials(BASE, sweep_params(**space))
    sample = trials(BASE, sweep_params(**space).model_copy(update={"sample": 5}))
    assert len(sample) == 5 and len({tuple(t.items()) for t in sample}) == 5
    assert [every.index(t) for t in sample] == sorted(every.index(t) for t in sample)
    assert sample == trials(BASE, sweep_params(**space).model_copy(update={"sample": 5}))
    other = trials(BASE, sweep_params(**space).model_copy(update={"sample": 5, "seed": 1}))
    assert other != sample
    assert trials(BASE, sweep_params(**space).model_copy(update={"sample": 50})) == every


def result(trial: int, val_accuracy: float, val_loss: float, status: str = FINISHED) -> dict:
    return {"trial": trial, "status": status, "val_accuracy": val_accuracy, "val_loss": val_loss,
            "test_accuracy": 0.5, "test_loss": 1.0}


def test_choice_is_on_validation_alone_ties_to_the_earlier_trial_never_a_diverged_one():
    results = [result(3, 0.9, 0.3), result(1, 0.8, 0.1), result(2, 0.9, 0.3), result(4, 0.95, 0.2, DIVERGED)]
    assert choose(results, classifies=True)["trial"] == 2  # 2 and 3 tie on both scores
    assert choose(results, classifies=False)["trial"] == 1  # regression: the lowest validation loss
    assert choose(list(reversed(results)), classifies=True)["trial"] == 2  # arrival order does not matter
    with pytest.raises(ValueError, match="every trial diverged"):
        choose([result(1, 0.9, 0.1, DIVERGED)], classifies=True)


def test_the_table_is_in_trial_order_whatever_the_order_results_arrive_in():
    results = [result(2, 0.9, 0.25) | {"lr": 0.2}, result(1, 0.8, 0.5) | {"lr": 0.1}]
    table = table_bytes(results).decode().splitlines()
    assert table[0].startswith("trial,lr,epochs,batch_size,weight_decay,schedule,status,val_accuracy")
    assert [row.split(",")[:2] for row in table[1:]] == [["1", "0.1"], ["2", "0.2"]]
    assert table_bytes(list(reversed(results))) == table_bytes(results)
    marked = table_bytes(results, chosen=2).decode().splitlines()
    assert marked[0].endswith(",chosen") and [row.split(",")[-1] for row in marked[1:]] == ["", "yes"]


def test_the_table_gives_each_score_as_python_writes_it_and_nothing_for_a_diverged_trial():
    results = [result(1, 0.1 + 0.2, 1 / 3) | {"lr": 0.1, "schedule": "cosine"},
               {"trial": 2, "status": DIVERGED, "lr": 0.4, "schedule": "cosine"}]  # no scores
    table = table_bytes(results, chosen=1)
    assert b"\r" not in table  # one line ending, as the other outputs
    rows = list(csv.DictReader(table.decode().splitlines()))
    assert (rows[0]["val_accuracy"], rows[0]["val_loss"]) == (repr(0.1 + 0.2), repr(1 / 3))
    assert (rows[0]["lr"], rows[0]["schedule"], rows[0]["status"]) == ("0.1", "cosine", FINISHED)
    assert rows[1]["status"] == DIVERGED and rows[1]["val_accuracy"] == rows[1]["val_loss"] == ""


def test_learning_rate_schedules():
    from regression.training import learning_rate

    def rates(schedule):
        p = PARAMS.model_copy(update={"lr": 0.4, "epochs": 4, "schedule": schedule})
        return [learning_rate(p, epoch) for epoch in range(1, 5)]

    assert rates("constant") == [0.4] * 4
    cosine = rates("cosine")
    assert cosine[0] == 0.4 and cosine == sorted(cosine, reverse=True) and cosine[-1] < 0.1
    assert rates("step") == pytest.approx([0.4, 0.4, 0.04, 0.004])


def test_weight_decay_shrinks_the_weights_alike_in_both_softmax_models(tiny_fashion):
    from idx_files import CLASSES
    from regression.models import MODELS
    from regression.training import as_splits, new_model, train

    splits = as_splits({"train": tiny_fashion["train"]}, MODELS["softmax_nn"])
    weights, norms = {}, {}
    for model in ("softmax_scratch", "softmax_nn"):
        for decay in (0.0, 0.5):
            p = PARAMS.model_copy(update={"lr": 0.1, "epochs": 2, "batch_size": 32, "weight_decay": decay,
                                          "architecture": model})
            trained, _ = new_model(model, splits["train"], CLASSES, p)
            train(model, MODELS[model], trained, splits, p)
            # (784, 10) weights and 10 biases, whichever way round the model holds them
            matrix, bias = sorted(trained.parameters(), key=lambda w: w.dim(), reverse=True)
            weights[model, decay] = (matrix.detach().reshape(-1, 10) if matrix.shape[-1] == 10
                                     else matrix.detach().T, bias.detach())
            norms[model, decay] = sum(w.square().sum().item() for w in weights[model, decay])
        assert norms[model, 0.5] < 0.8 * norms[model, 0.0]  # each of the 14 steps takes 5 % off the weights
    for decay in (0.0, 0.5):  # the same decay: the hand-written step and torch's SGD agree
        for scratch, nn in zip(weights["softmax_scratch", decay], weights["softmax_nn", decay]):
            assert (scratch - nn).abs().max().item() < 1e-5


def test_params_name_each_bad_sweep_key(tmp_path):
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["sweep"] = {"softmax_nn": {**TINY_SWEEP, "grid": {**TINY_SWEEP["grid"], "lr": [0.1, 0.1],
                                                             "schedule": ["cosine", "linear"]}},
                       "nonesuch": TINY_SWEEP}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as error:
        load_params(tmp_path / "params.yaml")
    lines = str(error.value).splitlines()[1:]
    assert any(line.startswith("  sweep.softmax_nn.grid.lr = [0.1, 0.1]: values repeat")
               for line in lines), lines
    assert any(line.startswith("  sweep.softmax_nn.grid.schedule.1 = 'linear'") for line in lines), lines
    params["sweep"] = {"nonesuch": TINY_SWEEP}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from regression.models import MODELS

    with pytest.raises(ParamsError, match="sweep.nonesuch: no train.nonesuch"):
        load_params(tmp_path / "params.yaml", models=MODELS)


# The stage on Dask, end to end.

OUTPUTS = ("models/sweep/softmax_nn.pt", "metrics/sweep/softmax_nn.json",
           "metrics/sweep/softmax_nn/trials.csv")


def sweep_project(dest: Path, grid: dict, n_train: int = 500) -> Path:
    """The stage's code, params.yaml with `grid` as softmax_nn's sweep, and a tiny dataset folder."""
    import torch

    from idx_files import learnable_split
    from regression.data import save_dataset
    from idx_files import CLASSES

    for name in ("src", "stages"):
        shutil.copytree(PROJECT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["sweep"] = {"softmax_nn": TINY_SWEEP | {"grid": TINY_SWEEP["grid"] | grid}}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    generator = torch.Generator().manual_seed(0)
    splits = {split: tuple(t.numpy().astype("uint8") for t in learnable_split(n, generator))
              for split, n in (("train", n_train), ("test", 100))}
    save_dataset(dest / "data/fashion-mnist", splits, {"name": "fashion-mnist", "classes": list(CLASSES)})
    subprocess.run([str(BIN / "python"), *stage_command("params")[1:]], cwd=dest, check=True,
                   env=environment(PYTHONPATH="src"), capture_output=True)  # the sweep's base
    return dest


def sweep_command(workers: int | None = None) -> list[str]:
    command = stage_command("sweep", "softmax_nn")[1:]  # after `python`
    assert command[command.index("--model-file"):] == ["--model-file", OUTPUTS[0], "--metrics", OUTPUTS[1],
                                                       "--trials", OUTPUTS[2]]
    return [str(BIN / "python"), *command, *(["--workers", str(workers)] if workers else [])]


def sweep_env(project: Path, scheduler: str | None = None) -> dict:
    env = environment(PYTHONPATH="src", MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}")
    return env | ({"DASK_SCHEDULER_ADDRESS": scheduler} if scheduler else {})


def sweep_process(project: Path, workers: int | None = None, scheduler: str | None = None):
    return subprocess.run(sweep_command(workers), cwd=project, env=sweep_env(project, scheduler),
                          capture_output=True, text=True, timeout=600)


def run_sweep(project: Path, workers: int | None = None, scheduler: str | None = None) -> dict[str, bytes]:
    result = sweep_process(project, workers, scheduler)
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: (project / name).read_bytes() for name in OUTPUTS}


def recorded_runs(project: Path) -> list:
    """Every run of the sweeps experiment in the project's store (none if there is no store or
    experiment yet: a sweep writes its runs once its trials and refit are done)."""
    if not (project / "mlflow.db").exists():
        return []
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fashion-mnist/sweeps")
    return client.search_runs([experiment.experiment_id], run_view_type=3) if experiment else []


def sweep_runs(project: Path) -> tuple[object, list]:
    """The sweep's parent run and its child runs in the project's store."""
    runs = recorded_runs(project)
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The tiny sweep on a local cluster of one worker: (project, its outputs' bytes)."""
    project = sweep_project(tmp_path_factory.mktemp("local") / "project", {})
    return project, run_sweep(project, workers=1)


@pytest.mark.slow
def test_local_sweep_records_parent_and_child_runs_and_registers_the_refit_champion(local_sweep):
    project, outputs = local_sweep
    metrics = read_json(project / OUTPUTS[1])
    # The headline numbers only (`dvc metrics show` gets a column per key); the table has the rest.
    assert list(metrics) == ["val_accuracy", "test_accuracy", "test_loss"] and metrics["val_accuracy"] > 0.9
    rows = outputs[OUTPUTS[2]].decode().splitlines()
    assert len(rows) == 5 and all(",finished," in row for row in rows[1:])
    [chosen] = [row for row in csv.DictReader(rows) if row["chosen"] == "yes"]
    assert float(chosen["val_accuracy"]) == metrics["val_accuracy"]
    parent, children = sweep_runs(project)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "softmax_nn sweep of 4"
    assert parent.data.metrics["test_accuracy"] == metrics["test_accuracy"]
    assert (parent.data.tags["sweep.trials"], parent.data.tags["sweep.chosen_trial"]) == ("4", chosen["trial"])
    assert parent.data.tags["model.sha256"] == hashlib.sha256(outputs[OUTPUTS[0]]).hexdigest()
    assert sorted(int(c.data.tags["sweep.trial"]) for c in children) == [1, 2, 3, 4]
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:  # each trial under its sweep, named and tagged as one of it
        trial = child.data.tags["sweep.trial"]
        assert child.info.run_name == f"softmax_nn trial {trial}"
        assert child.data.tags["sweep.run_id"] == parent.info.run_id
        assert child.data.tags["sweep.model"] == "softmax_nn"
    # The trials ran within the sweep's time: the parent's start and end span its children's.
    assert parent.info.start_time <= min(c.info.start_time for c in children)
    assert parent.info.end_time >= max(c.info.end_time for c in children)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(children[0].info.run_id, "val_accuracy")] == [1, 2]
    assert "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    # The parent reads as a train run of the chosen settings: the same param and metric names,
    # each score at its epoch; its logged model records those settings and nothing of the search.
    settings = {key: chosen[key] for key in ("lr", "epochs", "batch_size", "weight_decay", "schedule")}
    assert {key: parent.data.params[key] for key in settings} == settings
    assert parent.data.params["sweep.grid.weight_decay"] == "[0.0, 0.001]"
    assert parent.data.metrics["val_accuracy"] == metrics["val_accuracy"]
    epochs = list(range(1, int(chosen["epochs"]) + 1))
    for key in ("train_loss", "val_accuracy", "test_accuracy"):
        assert sorted({m.step for m in client.get_metric_history(parent.info.run_id, key)}) == epochs, key
    [logged] = client.search_logged_models([parent.info.experiment_id])
    assert logged.source_run_id == parent.info.run_id
    assert {key: logged.params[key] for key in settings} == settings
    assert not any(key.startswith("sweep.") for key in logged.params), logged.params
    champion = client.get_model_version_by_alias("fashion-mnist-softmax_nn", "champion")
    assert champion.run_id == parent.info.run_id and champion.tags["run_name"] == parent.info.run_name
    assert champion.tags["sweep.trial"] == chosen["trial"]
    assert champion.tags["sweep.chosen"] == parent.data.tags["sweep.chosen"]
    assert "sweep.run_id" not in champion.tags  # its run is the sweep's
    assert champion.tags["val_accuracy"] == f"{metrics['val_accuracy']:.6g}"


@pytest.mark.slow
def test_the_refit_is_the_chosen_settings_trained_on_every_training_image(local_sweep):
    """The refit model file is, byte for byte, the chosen trial's settings trained on all 500
    training images (not on the 400 the trials trained on)."""
    from regression.data import load_dataset
    from regression.models import MODELS, model_bytes
    from regression.params import check_entry, load_section
    from regression.training import as_splits, new_model, train

    project, outputs = local_sweep
    params = project / "params.yaml"
    base = search_base("softmax_nn", yaml.safe_load(params.read_text())["train"]["softmax_nn"])
    rows = list(csv.DictReader(outputs[OUTPUTS[2]].decode().splitlines()))
    [chosen_trial] = [int(row["trial"]) for row in rows if row["chosen"] == "yes"]
    chosen = check_entry("softmax_nn", trials(base, load_section(params, "sweep.softmax_nn").sweep["softmax_nn"])[
        chosen_trial - 1], MODELS, ["fashion-mnist", "synthetic"])
    meta, arrays = load_dataset(project / "data/fashion-mnist")
    splits = as_splits({"train": arrays["train"]}, MODELS["softmax_nn"])
    assert len(splits["train"].y) == 500
    # The stage's model name comes from its command line, a string apart from the params' architecture:
    # so here (pickle writes a string met twice as one object, and the bytes would differ).
    name = "".join(["softmax", "_nn"])
    model, config = new_model(name, splits["train"], tuple(meta["classes"]), chosen)
    train("softmax_nn", MODELS["softmax_nn"], model, splits, chosen)
    assert model_bytes(model, config) == outputs[OUTPUTS[0]]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_sweep_recording_no_run_and_writing_no_output(signum, tmp_path):
    """SIGTERM to the stage (as `timeout` sends it), or SIGINT to its whole process group (Ctrl-C
    in a terminal, which its local workers receive too), while its trials run: the runs are
    written only once the trials and the refit are done, so none is."""
    project = sweep_project(tmp_path / "project", {"epochs": [60], "batch_size": [5]}, n_train=2000)
    sweep = subprocess.Popen(sweep_command(workers=1), cwd=project, env=sweep_env(project), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    for line in sweep.stdout:
        if line.startswith("sweep@softmax_nn:"):  # the cluster is up, the trials are running
            break
    time.sleep(1)
    if signum == signal.SIGINT:
        os.killpg(sweep.pid, signum)
    else:
        sweep.send_signal(signum)
    output = sweep.stdout.read()
    assert sweep.wait(timeout=60) == 128 + signum, output
    assert "Traceback" not in output and f"error: interrupted by {signum.name}" in output, output
    assert not any((project / name).exists() for name in OUTPUTS)
    assert recorded_runs(project) == []


@pytest.mark.slow
def test_a_sweep_whose_every_trial_diverged_is_recorded_failed_and_writes_no_output(tmp_path):
    """Nothing to refit: the stage fails in one line, and its run says why, its trials under it."""
    project = sweep_project(tmp_path / "project", {"lr": [1000.0, 2000.0], "epochs": [1]})
    result = sweep_process(project, workers=1)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert "error: sweep.softmax_nn: every trial diverged; try smaller learning rates" in output, output
    assert not any((project / name).exists() for name in OUTPUTS)
    parent, children = sweep_runs(project)
    assert (parent.info.status, parent.info.run_name) == ("FAILED", "softmax_nn sweep of 4")
    assert "every trial diverged" in parent.data.tags["mlflow.runStatusReason"]
    assert sorted(int(c.data.tags["sweep.trial"]) for c in children) == [1, 2, 3, 4]
    assert {c.info.status for c in children} == {"FAILED"}
    assert all("training diverged" in c.data.tags["mlflow.runStatusReason"] for c in children)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert client.search_registered_models() == []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Dask scheduler and two `make worker` on 127.0.0.1, each its own process group:
    (scheduler address, {worker number: Popen})."""
    from distributed import Client

    logs = tmp_path_factory.mktemp("cluster")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = {"scheduler": subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        env=environment(), stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)}
    for n in (1, 2):
        processes[n] = subprocess.Popen(
            ["make", "--no-print-directory", "-C", str(PROJECT), "worker", f"SCHEDULER={address}",
             "WORKERS=1"],
            env=environment(), stdout=open(logs / f"worker{n}.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def trials_done(address: str) -> set[str]:
    """The keys of the sweep trials the Dask scheduler at `address` has seen finish."""
    from distributed import Client

    def finished(dask_scheduler):  # local: pickled by value, the scheduler has no copy of the tests
        return {str(t[0]) for t in dask_scheduler.transition_log
                if str(t[0]).startswith("trial-") and t[2] == "memory"}
    with Client(address, timeout="30s") as client:
        return client.run_on_scheduler(finished)


@pytest.mark.slow
def test_make_workers_pin_their_numerics_in_a_shell_that_asks_for_others(cluster):
    """The workers started (before any trial) from a shell exporting other numerics settings
    (USER_NUMERICS, not this process's pinning): `--preload regression` pinned each one."""
    from distributed import Client

    from regression.numerics import CPU_CAPABILITY, PINNED_ENVIRONMENT, THREADS

    assert all(environment()[k] != PINNED_ENVIRONMENT[k] for k in USER_NUMERICS)
    address, _ = cluster
    pinned = dict(PINNED_ENVIRONMENT)

    def numerics():
        import torch

        return ({k: os.environ.get(k) for k in pinned}, torch.get_num_threads(),
                torch.backends.cpu.get_cpu_capability())
    with Client(address, timeout="30s") as client:
        found = client.run(numerics)
    assert len(found) == 2
    for environ, threads, capability in found.values():
        assert (environ, threads, capability) == (PINNED_ENVIRONMENT, THREADS, CPU_CAPABILITY.upper())


@pytest.mark.slow
def test_a_cluster_of_separate_processes_gives_the_bytes_of_one_local_worker(local_sweep, cluster, tmp_path):
    _, local = local_sweep
    address, _ = cluster
    project = sweep_project(tmp_path / "project", {})
    before = trials_done(address)
    assert run_sweep(project, scheduler=address) == local
    assert len(trials_done(address) - before) == 4  # the cluster ran the 4 trials


@pytest.mark.slow
def test_a_sweep_stops_when_a_worker_runs_other_code(cluster, tmp_path):
    """The workers run the project's package; the sweep's checkout differs by a comment."""
    address, _ = cluster
    project = sweep_project(tmp_path / "project", {})
    with open(project / "src/regression/search.py", "a") as source:
        source.write("# a change the workers do not have\n")
    result = sweep_process(project, scheduler=address)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert "error: a worker runs other code" in output and "clone of the same commit" in output, output
    assert not any((project / name).exists() for name in OUTPUTS)
    assert recorded_runs(project) == []  # stopped before its trials were done: nothing to record


@pytest.mark.slow
def test_an_unreachable_scheduler_address_is_one_error_line(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    project = sweep_project(tmp_path / "project", {})
    started = time.monotonic()
    result = sweep_process(project, scheduler=address)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert f"error: DASK_SCHEDULER_ADDRESS={address}: no Dask scheduler answers" in output, output
    assert "Connection refused" in output  # known at once, not after Dask's 20 s of trying again
    assert time.monotonic() - started < 60
    assert not any((project / name).exists() for name in OUTPUTS)
    assert recorded_runs(project) == []  # stopped before its trials were done: nothing to record


def trials_running(address: str, worker: subprocess.Popen) -> list[str]:
    """The tasks the Dask worker process of `make worker` process group `worker` is running."""
    from distributed import Client

    with Client(address, timeout="30s") as client:
        [ours] = [a for a, pid in client.run(os.getpid).items() if os.getpgid(pid) == worker.pid]
        executing = client.run(lambda dask_worker: [str(t.key) for t in dask_worker.state.executing],
                               workers=[ours])
    return executing[ours]


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_loses_no_trial(cluster, tmp_path):
    address, processes = cluster
    # 4 trials of equal length on 2 workers: when the first ends, the other worker has one under way.
    grid = {"epochs": [20], "batch_size": [5]}
    project = sweep_project(tmp_path / "project", grid, n_train=2000)
    sweep = subprocess.Popen(sweep_command(), cwd=project, env=sweep_env(project, address), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in sweep.stdout:
        if line.startswith("trial "):  # one trial done; each worker has another under way
            running = trials_running(address, processes[2])
            os.killpg(processes[2].pid, signal.SIGKILL)
            break
    assert len(running) == 1 and running[0].startswith("trial-"), running  # it died mid-trial
    output = line + sweep.stdout.read()
    assert sweep.wait(timeout=600) == 0, output
    assert processes[2].wait(timeout=10) is not None
    table = (project / OUTPUTS[2]).read_text().splitlines()
    assert [row.split(",")[0] for row in table[1:]] == [str(n) for n in range(1, 5)]
    assert sum(line.startswith("trial ") for line in output.splitlines()) == 4  # each taken once
    parent, children = sweep_runs(project)
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.tags["sweep.trial"]) for c in children) == list(range(1, 5))
    assert {c.info.status for c in children} == {"FINISHED"}
    # The same bytes as when no worker dies: the trials are re-run elsewhere, alike.
    again = sweep_project(tmp_path / "again", grid, n_train=2000)
    assert run_sweep(again, workers=2) == {name: (project / name).read_bytes() for name in OUTPUTS}
