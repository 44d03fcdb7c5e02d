"""Where a stage's time goes, for the benchmark (`benchmarks/pipeline.py`): its phases and peak RSS."""

import json
import os
import resource
import time
from contextlib import contextmanager


class Phases:
    """A stage's phases, its startup and wall time, its peak RSS.

    `with phases("training"):` adds the block's wall time to "training"; a phase entered inside
    another pauses the outer one. With $STAGE_TIMINGS set to a file, `record` appends one JSON
    line: the stage, its phases, the time from process start to `main` (interpreter start,
    imports and params), the whole wall time, and the peak RSS of the stage and of its largest
    child process.
    """

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.stack: list[tuple[str, float]] = []
        self.started = time.time()  # when `main` starts: the end of startup

    @contextmanager
    def __call__(self, name: str):
        now = time.perf_counter()
        if self.stack:
            outer, since = self.stack[-1]
            self.seconds[outer] = self.seconds.get(outer, 0.0) + now - since
        self.stack.append((name, now))
        try:
            yield
        finally:
            name, since = self.stack.pop()
            now = time.perf_counter()
            self.seconds[name] = self.seconds.get(name, 0.0) + now - since
            if self.stack:
                self.stack[-1] = (self.stack[-1][0], now)

    def record(self, stage: str, exit_code: int) -> None:
        path = os.environ.get("STAGE_TIMINGS")
        if not path:
            return
        start = process_start_time()
        with open(path, "a") as f:
            f.write(json.dumps({
                "stage": stage, "exit_code": exit_code, "startup": self.started - start,
                "phases": self.seconds, "wall": time.time() - start,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                # its largest child's (a sweep's local Dask worker), once waited for
                "child_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }) + "\n")


phases = Phases()  # the running stage's


def process_start_time() -> float:
    """When this process started (seconds since the epoch, to 10 ms), from /proc."""
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")
