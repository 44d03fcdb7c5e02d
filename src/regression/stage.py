"""What every stage script shares: arguments and params first, signals as exceptions, one-line failures.

`run` checks the arguments and all of params.yaml before `main` does any work. SIGTERM (what
`timeout`, CI cancellation and container stops send) and SIGINT raise `Interrupted` in the main
thread, so `finally` blocks and context managers clean up; a second signal during that clean-up
is noted, not raised, so the clean-up finishes. A `PipelineError` becomes one line on stderr
and exit status 1; an interruption exits 128 + the signal number, as a shell reports it.
"""

import argparse
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

from regression import PipelineError
from regression.params import Params, load_params


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
        models: Mapping[str, Any] | None = None) -> None:
    """Parse arguments, load params (model names checked against `models` if given), call main."""
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, _raise_interrupted)
    code = 0
    try:
        args = parser.parse_args()
        main(load_params(models=models), args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 1
    except Interrupted as interrupted:
        print(f"error: {interrupted}", file=sys.stderr)
        code = 128 + interrupted.signum
    exit_now(code)


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown.

    With torch loaded, tearing the interpreter down takes about half a second, paid by every
    stage of every `dvc repro`. By the time a stage ends, each output has been written to a
    temporary file and renamed into place, and the MLflow run has been ended, so nothing is
    lost by skipping it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser whose help starts with the stage script's first docstring line."""
    return argparse.ArgumentParser(description=description.strip().splitlines()[0])
