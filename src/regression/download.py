"""Fetch a dataset's IDX files from an ordered list of sources, within a deadline and size caps.

Each file is tried at each source in turn, as `<source>/<name>.gz`. What arrives is
decompressed and checked against the size and sha256 of the *decompressed* bytes, so a mirror
that recompressed the files still passes. Nothing reaches the output folder until all files have
passed: they are assembled in a temporary folder beside it, which is then renamed into place.

A bad source costs little. `timeout` is the deadline for one file from one source, however
slowly its bytes drip; a source that timed out or could not be reached is not tried for the
remaining files (one that served a bad file still is); and neither the download nor its
decompressed bytes may grow much past the expected size.

torchvision's `download_url` is not used: it has no time-out, fetches each URL twice and
writes straight to its destination. Its IDX reader is used to load the files (idx.py).
"""

import gzip
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

from regression import PipelineError
from regression.files import folder_replaced
from regression.params_schema import ExpectedFile

CHUNK = 1 << 16
FETCH_ERRORS = (OSError, ValueError, EOFError, zlib.error, http.client.HTTPException)


class DownloadError(PipelineError):
    """No source gave a file whose size and checksum matched."""


def sources_with_override(sources: list[str], variable: str) -> list[str]:
    """The params' sources, with the one the environment variable `variable` names (if set) first."""
    override = os.environ.get(variable, "").strip()
    if not override:
        return list(sources)
    if "://" not in override:
        override = Path(override).resolve().as_uri()
    return [override] + [s for s in sources if s.rstrip("/") != override.rstrip("/")]


def file_url(source: str, name: str) -> str:
    """`name` inside the folder `source`, whether or not it ends with "/" (urljoin drops the empty
    path segment that adding one more makes)."""
    return urllib.parse.urljoin(source + "/", name)


def max_gzip_size(size: int) -> int:
    """A generous bound on the gzip of `size` bytes: deflate adds 5 bytes per 64 KiB of
    incompressible data, gzip a header (which may hold a file name) and an 8-byte trailer."""
    return size + size // 1000 + CHUNK


def fetch(url: str, destination: Path, max_bytes: int, timeout: float) -> None:
    """Copy `url` (http, https or file) to `destination`, with a progress bar; fail past
    `max_bytes` bytes or `timeout` seconds from the start.

    urllib's timeout bounds each socket operation, not the transfer, so the deadline is checked
    between reads and each read of the socket may wait only for the time left.
    """
    deadline = time.monotonic() + timeout

    def time_left() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    try:
        with urllib.request.urlopen(url, timeout=time_left()) as response, open(destination, "wb") as out:
            size = response.headers.get("Content-Length")
            total = int(size) if size and size.isdigit() else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, leave=False) as bar:
                while True:
                    wait_at_most(response, time_left())
                    block = response.read1(CHUNK)  # what has arrived, not a full CHUNK: drips are seen
                    if not block:
                        break
                    received += len(block)
                    if received > max_bytes:
                        raise ValueError(f"sent more than the {max_bytes} bytes that a gzip of the "
                                         "expected size can take")
                    out.write(block)
                    bar.update(len(block))
            if total is not None and received < total:
                raise ValueError(f"ended after {received} of the {total} bytes announced")
    except OSError as error:
        if isinstance(getattr(error, "reason", error), TimeoutError):  # urllib wraps one in connect
            raise TimeoutError(f"not complete within the {timeout:g} s deadline") from None
        raise


def wait_at_most(response, seconds: float) -> None:
    """Let the next read of an HTTP response wait `seconds` at most. urllib does not expose the
    socket, so it is looked up; a file:// response has none, and its reads never wait."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def decompress_and_verify(compressed: Path, destination: Path, expected: ExpectedFile) -> None:
    """Write the decompressed bytes of the gzip file `compressed`, stopping as soon as they
    outgrow `expected.bytes`; check their size and sha256."""
    digest = hashlib.sha256()
    size = 0
    with gzip.open(compressed, "rb") as src, open(destination, "wb") as out:
        while block := src.read(CHUNK):
            size += len(block)
            if size > expected.bytes:
                raise ValueError(f"decompresses to more than the expected {expected.bytes} bytes "
                                 f"(from {compressed.stat().st_size} compressed bytes)")
            digest.update(block)
            out.write(block)
    if size != expected.bytes:
        raise ValueError(f"decompresses to {size} bytes, expected {expected.bytes}")
    if digest.hexdigest() != expected.sha256:
        raise ValueError(f"sha256 of the decompressed bytes is {digest.hexdigest()}, "
                         f"expected {expected.sha256}")


def source_is_down(url: str, error: Exception) -> bool:
    """Whether `error` says the source cannot be reached in time (refused, unknown host, timed
    out), so the other files need not be tried there, rather than that one file is bad."""
    if isinstance(error, TimeoutError):
        return True
    # urllib raises a plain URLError when it could not connect; for a file:// URL, when a file is missing.
    not_connected = isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError)
    return not_connected and not url.startswith("file:")


def download_file(name: str, expected: ExpectedFile, sources: list[str], down: dict[str, str],
                  workdir: Path, timeout: float, source_env: str) -> list[str]:
    """Put the verified, decompressed file `name` in `workdir`; return the failures seen.

    Sources found down are skipped and added to `down`, with why, for the files still to come.
    """
    failures, tried = [], []
    fetched = workdir / f"{name}.gz"
    for source in sources:
        if source in down:
            tried.append(f"{source}: skipped, {down[source]}")
            continue
        url = file_url(source, f"{name}.gz")
        try:
            fetch(url, fetched, max_gzip_size(expected.bytes), timeout)
            decompress_and_verify(fetched, workdir / name, expected)
            return failures
        except FETCH_ERRORS as error:
            failure = f"{url}: {error}"
            if source_is_down(url, error):
                down[source] = f"down since {name}.gz: {error}"
                failure += f" (so {source} is skipped for the remaining files)"
            failures.append(failure)
            tried.append(failure)
            (workdir / name).unlink(missing_ok=True)
        finally:
            fetched.unlink(missing_ok=True)
    raise DownloadError(f"{name}: no source gave a file of {expected.bytes} bytes with sha256 "
                        f"{expected.sha256}. Tried:\n" + "\n".join(f"  {line}" for line in tried)
                        + f"\nSet {source_env} to a folder or URL that holds {name}.gz to try it first.")


def download_all(files: Mapping[str, ExpectedFile], sources: list[str], out_dir: str | Path,
                 timeout: float, source_env: str) -> list[str]:
    """Download every file into `out_dir`, all or nothing (`files.folder_replaced`). Returns the
    failures met on the way."""
    down: dict[str, str] = {}
    failures = []
    with folder_replaced(out_dir) as workdir:
        for name, expected in files.items():
            failures += download_file(name, expected, sources, down, workdir, timeout, source_env)
    return failures
