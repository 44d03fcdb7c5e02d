"""A sweep's trials on Dask distributed: a local cluster sized to the machine, or any running cluster.

`cluster` connects to the scheduler that `DASK_SCHEDULER_ADDRESS` (Dask's own setting, also
read from Dask's config as `scheduler-address`) names, or starts a local cluster of one-thread
worker processes, one per core. `run_trials` sends the arrays to every worker once, submits
one task per trial and yields each result as it arrives. A task is `run_trial`, a function of
this package: a worker unpickling it imports `regression` first, so its numerics are pinned
before torch loads (see `regression.numerics`), and the same trial gives the same numbers on
any worker. Workers stay up between trials and sweeps: a trial pays no interpreter start, no
import and no DVC. A worker needs only this package at the same commit and its environment
(`make worker`): no data, no DVC cache, no tracking store. When a worker dies, the scheduler
runs its trials again on another; each result is taken once, by trial number.
"""

import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from regression import PipelineError

PACKAGE = Path(__file__).parent
# A trial whose worker dies this many times in a row fails the sweep (Dask's own default is 3).
ALLOWED_FAILURES = 3


class ClusterError(PipelineError):
    """The Dask cluster cannot be reached, or its workers run other code."""


def code_digest() -> str:
    """A digest of this package's source: workers must run the same code as the sweep."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(f"{path.relative_to(PACKAGE)}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def scheduler_address() -> str | None:
    """The scheduler to use: $DASK_SCHEDULER_ADDRESS (or Dask's config), None for a local cluster."""
    import dask

    return os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get("scheduler-address", None)


def refused_at_once(address: str) -> None:
    """Raise OSError if a tcp:// or tls:// address refuses a connection (nothing listens) or names
    no host: Dask would try again until its timeout, 20 s, for what is known at once. A host
    that does not answer is left to Dask's timeout."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme in ("tcp", "tls") and parts.hostname and parts.port:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=2).close()
        except TimeoutError:
            pass


def local_workers(trials: int) -> int:
    """A local cluster's size: a worker per core this process may use, no more than the trials."""
    return max(1, min(len(os.sched_getaffinity(0)), trials))


@contextmanager
def cluster(workers: int | None, trials: int):
    """A Dask client: to $DASK_SCHEDULER_ADDRESS's cluster, else to a local cluster of `workers`
    one-thread processes (default: `local_workers`), closed at the end of the block."""
    import dask
    from distributed import Client, LocalCluster

    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
    address = scheduler_address()
    if address:
        try:
            refused_at_once(address)
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"DASK_SCHEDULER_ADDRESS={address}: no Dask scheduler answers "
                               f"({error})") from None
        with client:
            yield client
        return
    n = workers or local_workers(trials)
    # Scheduler and its HTTP server on free ports of 127.0.0.1 (Dask's 8787 may be another user's);
    # the workers preload this module (see `dask_setup`). Their logs are silenced but for the
    # critical: a failed task reaches the sweep as an exception, and a worker that outlives the
    # scheduler by a heartbeat (after Ctrl-C) would only print a traceback about it.
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
                      preload=[__name__]) as local, \
            Client(local) as client:
        yield client


def dask_setup(worker) -> None:
    """Preloaded by a local cluster's workers: they ignore SIGINT. Ctrl-C in a terminal reaches
    every process of the sweep; the sweep itself ends its runs and closes its cluster."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def describe(client) -> str:
    """'2 workers at tcp://127.0.0.1:40001' (local) or of the named cluster."""
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
    return f"{len(info['workers'])} workers at {info['address']}"


def _takes_n_workers(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def run_trial(trial: int, model: str, params: dict, data: dict) -> dict:
    """One trial, on a worker: train `model` with `params` on data["train"], scored each epoch on
    every other split. Returns the trial's number, status, per-epoch history, final scores and
    the code digest of the worker's package."""
    from regression.headline import TEST, VAL, split_of
    from regression.models import MODELS
    from regression.search import DIVERGED, FINISHED
    from regression.training import TrainingDiverged, as_splits, new_model, train

    spec = MODELS[params["architecture"]]
    p = spec.params.model_validate(params)
    splits = as_splits(data["arrays"], spec)
    trained, _ = new_model(model, splits["train"], tuple(data["classes"]), p)
    result = {"trial": trial, "code": code_digest()}
    try:
        history, _ = train(model, spec, trained, splits, p)
    except TrainingDiverged as error:
        return result | {"status": DIVERGED, "error": str(error), "history": []}
    scores = {key: value for key, value in history[-1].items() if split_of(key) in (VAL, TEST)}
    return result | {"status": FINISHED, "history": history} | scores


def run_trials(client, model: str, trials: list[dict], arrays: dict[str, tuple[np.ndarray, np.ndarray]],
               classes: tuple[str, ...]) -> Iterator[dict]:
    """Run `trials` (each a model's checked params, as a dict) on the cluster; yield each result once, as it arrives.

    The arrays go to every worker once (broadcast), so that a dying worker takes no data with it.
    """
    from distributed import as_completed

    def trial_task(*args):
        # Defined here, not at module level, so that it is pickled by value: the scheduler, which
        # reads every task, needs no copy of this package (any Dask cluster will do); the worker
        # imports the package when it runs the task.
        from regression.sweep_dask import run_trial

        return run_trial(*args)

    [data] = client.scatter([{"arrays": arrays, "classes": list(classes)}], broadcast=True)
    token = os.urandom(6).hex()
    futures = [client.submit(trial_task, i, model, params, data, pure=False, key=f"trial-{i}-{token}")
               for i, params in enumerate(trials, start=1)]
    ours, seen = code_digest(), set()
    try:
        for future in as_completed(futures):
            result = future.result()
            if result["code"] != ours:
                raise ClusterError(f"a worker runs other code (package digest {result['code']}, this "
                                   f"checkout's {ours}): start workers from a clone of the same commit")
            if result["trial"] in seen:  # a task is never finished twice; be sure of it
                continue
            seen.add(result["trial"])
            yield result
    finally:
        client.cancel(futures + [data])
