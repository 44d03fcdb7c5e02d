"""The same bytes whatever the machine: the numerics a user's environment or CPU would change are pinned.

Each case runs in a fresh process with the environment a user or another CPU could bring
(threads, torch's kernel family, MKL's code path, OpenBLAS's kernels) and compares what comes
out, byte for byte, with a process that brings nothing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NOISE_STD, TRUE_B, TRUE_W, stage_module

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        return set(next((line for line in f if line.startswith("flags")), ":").split(":", 1)[1].split())


HAS_AVX512 = "avx512f" in cpu_flags()

# What a user's shell, a scheduler or another CPU could hand a stage. Unpinned, each of these
# changes the trained weights (measured on an AVX-512 machine: threads, kernels and MKL's path).
ENVIRONMENTS = {
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    "3 threads": {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"},
    "default kernels": {"ATEN_CPU_CAPABILITY": "default"},
    "avx2 kernels": {"ATEN_CPU_CAPABILITY": "avx2"},
    **({"avx512 kernels": {"ATEN_CPU_CAPABILITY": "avx512"}} if HAS_AVX512 else {}),
    "MKL picks its path": {"MKL_CBWR": "AUTO"},
    "MKL's AVX2 path": {"MKL_CBWR": "AVX2"},
    "all of the machine's own": {"OMP_NUM_THREADS": "2", "MKL_CBWR": "AUTO", "MKL_DYNAMIC": "TRUE",
                                 "ATEN_CPU_CAPABILITY": "avx512" if HAS_AVX512 else "avx2",
                                 "ONEDNN_MAX_CPU_ISA": "ALL"},
}


def run_python(args: list[str], env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("OMP_", "MKL_", "ATEN_", "ONEDNN_", "OPENBLAS_"))}
    result = subprocess.run([sys.executable, *args], env=base | {"PYTHONPATH": f"{ROOT / 'src'}:{TESTS}"} | env,
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def dataset_folders(tmp_path_factory):
    """A Fashion-MNIST look-alike (1,000 train and 300 test images) and the synthetic data, saved
    as the stages save them."""
    import torch

    from idx_files import learnable_split
    from regression.data import save_dataset
    from idx_files import CLASSES

    import numpy as np

    folder = tmp_path_factory.mktemp("numerics")
    generator = torch.Generator().manual_seed(1)
    fashion = {split: tuple(a.numpy() for a in learnable_split(n, generator))
               for split, n in (("train", 1000), ("test", 300))}
    save_dataset(folder / "fashion-mnist", fashion, {"name": "fashion-mnist", "classes": list(CLASSES)})
    synthetic_data = stage_module("generate").synthetic_data
    rng, w = np.random.default_rng(0), np.asarray(TRUE_W, dtype=np.float32)
    save_dataset(folder / "synthetic", {split: synthetic_data(w, TRUE_B, NOISE_STD, n, rng)
                                        for split, n in (("train", 1000), ("test", 200))},
                 {"name": "synthetic", "true_w": TRUE_W, "true_b": TRUE_B})
    return folder / "fashion-mnist", folder / "synthetic"


def trained(folders, env: dict[str, str]) -> dict:
    return json.loads(run_python([str(TESTS / "train_models.py"), *map(str, folders)], env))


@pytest.fixture(scope="module")
def reference(dataset_folders) -> dict:
    return trained(dataset_folders, {})


def test_the_reference_run_is_pinned_and_trains_every_model(reference):
    numerics = reference["numerics"]
    assert numerics["numerics.threads"] == "1"
    assert numerics["numerics.cpu_capability"] == "AVX2"
    assert numerics["numerics.mkl_cbwr"] == "COMPATIBLE"
    assert numerics["numerics.pinned"] == "true"
    from regression.models import MODELS

    assert set(reference["models"]) == set(MODELS)
    # Two epochs, each with finite metrics: the runs compared below really trained.
    for result in reference["models"].values():
        assert [record["epoch"] for record in result["history"]] == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=list(ENVIRONMENTS))
def test_every_model_trains_to_the_same_bytes_whatever_the_environment(dataset_folders, reference, environment):
    result = trained(dataset_folders, ENVIRONMENTS[environment])
    differ = [f"{name}: {what} differ" for name, expected in reference["models"].items()
              for what, key in (("model files", "sha256"), ("metrics", "history"))
              if result["models"][name][key] != expected[key]]
    assert not differ
    assert result["numerics"] == reference["numerics"]


def test_pin_overrides_a_users_settings_and_describe_says_what_the_numbers_depend_on(monkeypatch):
    """`import regression` pins first thing (before any test runs); here again, in this process, over
    a user's settings and with torch loaded and set to two threads."""
    import platform

    import torch

    from regression import numerics

    assert numerics.describe()["numerics.pinned"] == "true"  # torch has read its kernels' setting
    for key in numerics.PINNED_ENVIRONMENT:
        monkeypatch.setenv(key, "a user's")
    try:
        torch.set_num_threads(2)
        assert numerics.describe()["numerics.pinned"] == "false"  # two threads: not the pinned numbers
        numerics.pin()
        assert {key: os.environ[key] for key in numerics.PINNED_ENVIRONMENT} == numerics.PINNED_ENVIRONMENT
        assert torch.get_num_threads() == numerics.THREADS == 1
        assert numerics.describe() == {
            "numerics.torch": torch.__version__, "numerics.cpu_capability": "AVX2", "numerics.threads": "1",
            "numerics.mkl_cbwr": "COMPATIBLE", "numerics.machine": platform.machine(), "numerics.pinned": "true"}
    finally:
        torch.set_num_threads(numerics.THREADS)


def test_describe_gives_strings_only_even_where_mkl_cbwr_was_unset(monkeypatch):
    """MLflow tags are strings: a process that dropped MKL_CBWR after the pin is described with an
    empty value, not None."""
    from regression import numerics

    monkeypatch.delenv("MKL_CBWR")
    described = numerics.describe()
    assert described["numerics.mkl_cbwr"] == ""
    assert all(isinstance(value, str) for value in described.values())

def test_mkl_runs_its_portable_path_on_one_thread_whatever_the_environment():
    """MKL's own account of each matrix product (MKL_VERBOSE): the COMPATIBLE path, one thread."""
    code = "import regression, torch; torch.ones(100, 784) @ torch.ones(784, 10)"
    out = run_python(["-c", code], {"MKL_VERBOSE": "1", "MKL_CBWR": "AUTO", "OMP_NUM_THREADS": "2",
                                    "MKL_NUM_THREADS": "2"})
    calls = [line for line in out.splitlines() if "SGEMM" in line]
    assert calls, out
    assert all("CNR:COMPATIBLE" in line and "NThr:1" in line for line in calls), calls


@pytest.mark.parametrize("coretype", ["Prescott", "Haswell", *(["SkylakeX"] if HAS_AVX512 else [])])
def test_synthetic_data_is_the_same_bytes_whichever_blas_kernels_numpy_runs(coretype):
    """OpenBLAS picks its kernels per CPU (fused multiply-adds or not); the data must not depend on them."""
    code = ("import hashlib, numpy as np, conftest as c\n"
            "f = c.stage_module('generate').synthetic_data\n"
            "X, y = f(np.asarray(c.TRUE_W, np.float32), c.TRUE_B, c.NOISE_STD, 1000, np.random.default_rng(0))\n"
            "print(hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest())")
    assert run_python(["-c", code], {"OPENBLAS_CORETYPE": coretype}) == run_python(["-c", code], {})


@pytest.mark.slow
def test_ci_names_the_stage_and_file_a_cold_run_did_not_reproduce(project_copy):
    """.ci/check_reproduced.py after a run whose results differ from the committed ones."""
    import yaml

    from projects import BIN, run

    run(project_copy, "git", "add", "-A")
    run(project_copy, "git", "commit", "-qm", "results")
    check = [str(BIN / "python"), str(ROOT / ".ci" / "check_reproduced.py")]
    assert run(project_copy, *check).returncode == 0

    lock = yaml.safe_load((project_copy / "dvc.lock").read_text())
    [model_out] = [out for out in lock["stages"]["train@softmax_nn"]["outs"] if out["path"].endswith(".pt")]
    committed_hash, model_out["md5"] = model_out["md5"], "0" * 32
    (project_copy / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    with (project_copy / "metrics/linear/history.json").open("a") as history:
        history.write("\n")
    result = run(project_copy, *check, check=False)
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("not reproduced: ")] == [
        f"not reproduced: train@softmax_nn: models/softmax_nn.pt: hash {committed_hash} in the committed "
        f"dvc.lock, {'0' * 32} here",
        "not reproduced: train@linear: metrics/linear/history.json: differs from the committed file"]


@pytest.mark.slow
def test_a_stage_pins_its_own_numerics_in_a_shell_that_asks_for_others(reproduced):
    """`dvc repro` from a shell that exports other thread counts, kernels and MKL path
    (tests/projects.py USER_NUMERICS, not this process's pinning): each model stage pinned its own,
    and its MLflow run says so in its `numerics.*` tags."""
    import platform

    import torch
    from mlflow import MlflowClient

    from projects import MODELS, USER_NUMERICS, environment, runs_by_model, store_uri
    from regression.numerics import CPU_CAPABILITY, PINNED_ENVIRONMENT, THREADS

    assert all(environment()[key] != PINNED_ENVIRONMENT[key] for key in USER_NUMERICS)
    path, _, _ = reproduced
    by_model = runs_by_model(MlflowClient(store_uri(path)))
    assert set(by_model) == set(MODELS)
    for model, [r] in by_model.items():
        tags = {key: value for key, value in r.data.tags.items() if key.startswith("numerics.")}
        assert tags == {"numerics.torch": torch.__version__, "numerics.cpu_capability": CPU_CAPABILITY.upper(),
                        "numerics.threads": str(THREADS), "numerics.mkl_cbwr": PINNED_ENVIRONMENT["MKL_CBWR"],
                        "numerics.machine": platform.machine(), "numerics.pinned": "true"}, model
