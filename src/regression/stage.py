"""What every stage script shares: read params first, report failures in one line."""

import sys
from collections.abc import Callable

from regression import PipelineError
from regression.params import Params, load_params


def run(main: Callable[[Params, list[str]], None]) -> None:
    """Call `main(params, argv)`; a PipelineError becomes a clear message and exit status 1."""
    try:
        main(load_params(), sys.argv[1:])
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def model_argument(params: Params, argv: list[str]) -> str:
    """The one model name a train/evaluate stage is called with; it must be a key of `train`."""
    if len(argv) != 1 or argv[0] not in params.train:
        known = ", ".join(params.train)
        raise PipelineError(f"expected one model name from params.yaml `train` ({known}), got {argv}")
    return argv[0]
