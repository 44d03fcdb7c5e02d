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
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from regression import PipelineError
from regression.params import Params, committed_params, flat, load_section, read_yaml
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
    code, key = 0, None
    try:
        args = parser.parse_args()
        key = owns(args) if callable(owns) else owns
        params = load_section("params.yaml", key, models=models)
        phases.started = time.time()
        main(params, args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 1
    except Interrupted as interrupted:
        print(f"error: {interrupted}", file=sys.stderr)
        code = 128 + interrupted.signum
    if code and (back := way_back(key)):
        print(back, file=sys.stderr)
    phases.record(os.environ.get("DVC_STAGE") or " ".join(sys.argv[:2]), code)
    sys.exit(code)


KEPT = "the outputs are still the last good run's"  # how a failed stage's last line starts


def way_back(section: str | None) -> str | None:
    """A failed stage's last line when params.yaml differs from git's HEAD (e.g. after `dvc exp run -S`):
    the keys of the section it owns (`train.mlp`) to put back, each with its committed value,
    keeping every other edit (a stage owning none: how to see them); None when params.yaml is the committed
    one (or outside a git repo)."""
    committed = committed_params()
    try:
        now = flat(read_yaml("params.yaml") or {})
    except PipelineError:
        return None
    if committed is None:
        return None
    before = flat(committed)
    if before == now:
        return None
    changed = sorted(key for key in set(before) | set(now)
                     if section and key.startswith(section + ".") and before.get(key) != now.get(key))
    back = [key for key in changed if key in before]
    new = [key for key in changed if key not in before]
    lines = [KEPT]
    if back:
        settings = " ".join(f"-S '{key}={json.dumps(before[key], separators=(',', ':'))}'"
                            if isinstance(before[key], list | dict) else f"-S {key}={before[key]}" for key in back)
        lines.append(f"`dvc exp run {settings}` puts back {', '.join(back)} as committed and keeps your other edits")
    if new:
        lines.append(f"{', '.join(new)}: not in the committed params.yaml; fix or remove it there")
    if len(lines) == 1:
        lines.append("`git diff HEAD params.yaml` shows your edits")
    return "; ".join(lines)


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
