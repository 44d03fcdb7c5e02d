"""What torch's numbers depend on, pinned, so that the same code, params and data give the same bytes on any machine.

On the CPU, a float result depends on three choices that torch and its libraries otherwise
make per machine:

- how many threads split a sum or a matrix product (each thread adds its own part, and the
  parts are added in another order): pinned to one thread, a number every machine has. On an
  idle machine the machine's own settings train these small models about a quarter faster;
  when the other cores are busy (DVC, MLflow, a second stage), a second OpenMP thread waits
  for its share and training takes ten times as long (benchmarks/pipeline.py measures both);
- which vector kernels torch runs (`ATEN_CPU_CAPABILITY`: AVX2 and AVX-512 sum in other
  orders, and draw normal numbers differently): pinned to AVX2, which every x86-64 CPU of the
  last decade has;
- MKL's code path for matrix products (`MKL_CBWR`), which MKL picks per CPU and per vendor:
  pinned to COMPATIBLE, the one path MKL runs alike on Intel and AMD (its AVX2 path is
  Intel-only: on an AMD CPU MKL silently picks for itself again). oneDNN is capped at AVX2
  for the same reason.

`pin` runs when the package is imported (see `regression/__init__.py`), before any of its
modules imports torch; it overrides the process's environment, so a user's settings (e.g.
OMP_NUM_THREADS, exported for another program) cannot change the bytes, and the processes it
starts inherit the same settings. `describe` says what a run's numbers depended on (its MLflow
run records it as tags). Not covered: CPUs without AVX2 and other architectures (ARM, Apple
silicon), where torch runs other kernels; `describe` says so, and so does the README.
"""

import os
import platform
import sys

THREADS = 1
CPU_CAPABILITY = "avx2"
# Set before torch (and so OpenMP, MKL and oneDNN) is loaded: each reads its own at start-up.
PINNED_ENVIRONMENT = {
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
    "MKL_DYNAMIC": "FALSE",
    "ATEN_CPU_CAPABILITY": CPU_CAPABILITY,
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def pin() -> None:
    """Pin this process's (and its children's) numerics; if torch is already loaded, its threads too."""
    os.environ.update(PINNED_ENVIRONMENT)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(THREADS)


def describe() -> dict[str, str]:
    """What this process's torch numbers depend on, as strings (MLflow tags); imports torch."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return {
        "numerics.torch": torch.__version__,
        "numerics.cpu_capability": capability,
        "numerics.threads": str(torch.get_num_threads()),
        "numerics.mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "numerics.machine": platform.machine(),
        # Bytes match those made elsewhere only where torch runs the pinned kernels.
        "numerics.pinned": str(capability == CPU_CAPABILITY.upper() and torch.get_num_threads() == THREADS
                               ).lower(),
    }
