"""Writing outputs so that a reader never sees a half-written file or folder, nor a mix of two runs."""

import contextlib
import json
import os
import secrets
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from regression import PipelineError


def json_bytes(obj) -> bytes:
    """JSON as every output of the project writes it: indented, ending with a newline."""
    return (json.dumps(obj, indent=2) + "\n").encode()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> None:
    write_bytes_atomic(path, json_bytes(obj))


@contextlib.contextmanager
def signals_held():
    """Defer SIGTERM and SIGINT until the block is done, then raise the first one again, so the
    stage runner's `Interrupted` cannot land in the middle of it. Signals reach the main thread
    only, so in any other thread (no handler of the stage runs there) this holds nothing.

    Python-level handlers, not a signal mask: a masked signal would go to another thread (tqdm
    runs one), and the main thread would still run the handler.
    """
    pending, previous = [], {}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda number, frame: pending.append(number))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            signal.raise_signal(pending[0])


@contextlib.contextmanager
def folder_replaced(folder: str | Path):
    """Yield an empty folder beside `folder` to fill; if the block succeeds, it replaces `folder`.

    On an error or an interruption the new folder is removed and an earlier `folder` is left as
    it was: the old folder goes and the new one takes its place, or neither.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Named before `try` and created inside it, so no signal lands between creating and owning it.
    work = folder.with_name(f".{folder.name}.{secrets.token_hex(8)}.tmp")
    try:
        work.mkdir()
        yield work
        with signals_held():
            if folder.exists():
                shutil.rmtree(folder)
            work.rename(folder)
    finally:
        with signals_held():
            shutil.rmtree(work, ignore_errors=True)


def write_folder_atomic(folder: str | Path, files: dict[str, bytes]) -> None:
    """Replace `folder` by one holding exactly `files` (name -> bytes); see `folder_replaced`."""
    with folder_replaced(folder) as work:
        for name, data in files.items():
            (work / name).write_bytes(data)


@contextlib.contextmanager
def staged_outputs(outputs: dict[Path, bytes | dict[str, bytes]]):
    """Write a stage's outputs, each file (bytes) or folder (name -> bytes) in full beside its
    place, and yield `publish`, which renames them all into place in one go, signals held.

    Until `publish` every earlier output is left as it was (dvc.yaml keeps them: `persist`);
    after, all are new; whatever was not published is removed on the way out. A write that fails
    (a full disk) is one line naming the file. Only a `kill -9` in the microseconds between two
    renames could leave some new and some old, and DVC, seeing the stage fail, records none of them.
    """
    token = secrets.token_hex(8)
    staged, replaced = [], []  # (temporary, final) paths; earlier folders moved aside

    def publish() -> None:
        with signals_held():
            for temporary, path in staged:
                if temporary.is_dir() and path.exists():  # a folder cannot be renamed onto another
                    aside = path.with_name(f".{path.name}.{token}.old")
                    path.rename(aside)
                    replaced.append(aside)
                os.replace(temporary, path)

    try:
        for path, content in outputs.items():
            path = Path(path)
            temporary = path.with_name(f".{path.name}.{token}.tmp")
            staged.append((temporary, path))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, dict):
                    temporary.mkdir()
                    for name, data in content.items():
                        (temporary / name).write_bytes(data)
                else:
                    temporary.write_bytes(content)
            except OSError as error:
                raise PipelineError(f"{path}: cannot be written ({why_not_written(path, error)}); "
                                    "the last good outputs are kept") from None
            if not temporary.is_dir() and path.is_dir():  # a file cannot replace a folder
                raise PipelineError(f"{path}: a folder is in the way of this file; the last good outputs are kept")
        yield publish
    finally:
        with signals_held():
            for temporary in [temporary for temporary, _ in staged] + replaced:
                if temporary.is_dir():
                    shutil.rmtree(temporary, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):  # e.g. its folder is a file: never made
                        temporary.unlink(missing_ok=True)


def why_not_written(path: Path, error: OSError) -> str:
    """The reason a write failed, in words: a file where a folder belongs is named."""
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    return f"{blocking} is a file, not a folder" if blocking else error.strerror or str(error)


def write_outputs(outputs: dict[Path, bytes | dict[str, bytes]]) -> None:
    """Replace a stage's outputs together, or none of them (`staged_outputs`)."""
    with staged_outputs(outputs) as publish:
        publish()
