"""What every stage script shares: arguments and params first, signals as exceptions, one-line failures.

`run` checks the arguments, the syntax of params.yaml and the params the stage owns (its
section; see `params.load_section`) before `main` does any work. SIGTERM (what
`timeout`, CI cancellation and container stops send) and SIGINT raise `Interrupted` in the main
thread, so `finally` blocks and context managers clean up; a second signal during that clean-up
is noted, not raised, so the clean-up finishes. A `PipelineError` becomes one line on stderr
and exit status 1; an interruption exits 128 + the signal number, as a shell reports it. A stage
writes its outputs only when it succeeds (dvc.yaml keeps the earlier ones meanwhile), so a failed
one ends by saying how to go back when params.yaml was changed.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from regression import PipelineError
from regression.params import Params, load_section
from regression.timing import phases


class Interrupted(BaseException):
    """The stage received SIGTERM or SIGINT. A BaseException, as KeyboardInterrupt is."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def _raise_interrupted(signum, frame):
    # From here on, further signals only wait for the clean-up this one starts.
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def run(main: Callable[[Params, argparse.Namespace], None], parser: argparse.ArgumentParser,
        owns: str | Callable[[argparse.Namespace], str] | None = None,
        models: Mapping[str, Any] | None = None) -> None:
    """Parse arguments, load the params the stage owns, call main with them.

    `owns` is the stage's section of params.yaml, or a function of the arguments giving it (e.g.
    `train.<model>`); `models`, if given, is the table a `train.<model>` key is checked against.
    """
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, _raise_interrupted)
    code = 0
    try:
        args = parser.parse_args()
        params = load_section("params.yaml", owns(args) if callable(owns) else owns, models=models)
        phases.started = time.time()
        main(params, args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 1
    except Interrupted as interrupted:
        print(f"error: {interrupted}", file=sys.stderr)
        code = 128 + interrupted.signum
    if code and params_changed():
        print(WAY_BACK, file=sys.stderr)
    phases.record(os.environ.get("DVC_STAGE") or " ".join(sys.argv[:2]), code)
    sys.exit(code)


# A failed stage's last line when params.yaml is not the committed one (e.g. after `dvc exp run -S`).
WAY_BACK = ("the outputs are still the last good run's; `git checkout HEAD params.yaml dvc.lock` undoes "
            "the change to params.yaml")


def params_changed() -> bool:
    """Whether params.yaml differs from git's HEAD (False outside a git repo)."""
    try:
        # Outside a repository `git diff` compares files (exit 1 too): ask git where we are first.
        if subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], capture_output=True,
                          timeout=10).returncode != 0:
            return False
        return subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "params.yaml"],
                              capture_output=True, timeout=10).returncode == 1
    except (OSError, subprocess.SubprocessError):
        return False


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser whose help starts with the stage script's first docstring line."""
    return argparse.ArgumentParser(description=description.strip().splitlines()[0])


def model_stage_parser(description: str, section: str, model_file: str, metrics: str) -> argparse.ArgumentParser:
    """`parser` with what every model stage takes: the model (a key of `section`), its dataset
    folder, where to write the model and its headline metrics."""
    model_parser = parser(description)
    model_parser.add_argument("model", help=f"a key of `{section}` in params.yaml")
    model_parser.add_argument("--data", type=Path, required=True, help="dataset folder to learn from")
    model_parser.add_argument("--model-file", type=Path, required=True, help=model_file)
    model_parser.add_argument("--metrics", type=Path, required=True, help=metrics)
    return model_parser
