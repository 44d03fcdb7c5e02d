"""Fetch the Fashion-MNIST IDX files from an ordered list of sources.

Each file is tried at each source in turn, as `<source>/<name>.gz`. What arrives is
decompressed and checked against the sha256 of the *decompressed* bytes, so a mirror that recompressed
the files still passes. Nothing reaches the output folder until all files have passed: they
are assembled in a temporary folder beside it, which is then renamed into place.

torchvision's `download_url` is not used: it has no time-out, fetches each URL twice and
writes straight to its destination. Its IDX reader is used to load the files (data.py).
"""

import gzip
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from regression import PipelineError

SOURCE_ENV = "FASHION_MNIST_SOURCE"
CHUNK = 1 << 16


class DownloadError(PipelineError):
    """No source gave a file whose checksum matched."""


def sources_with_override(sources: list[str]) -> list[str]:
    """The params' sources, with the one named in $FASHION_MNIST_SOURCE (if set) first."""
    override = os.environ.get(SOURCE_ENV, "").strip()
    if not override:
        return list(sources)
    if "://" not in override:
        override = Path(override).resolve().as_uri()
    return [override] + [s for s in sources if s.rstrip("/") != override.rstrip("/")]


def file_url(source: str, name: str) -> str:
    return urllib.parse.urljoin(source if source.endswith("/") else source + "/", name)


def fetch(url: str, destination: Path, timeout: float) -> None:
    """Copy `url` (http, https or file) to `destination`, with a progress bar."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
        size = response.headers.get("Content-Length")
        total = int(size) if size and size.isdigit() else None
        with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, leave=False) as bar:
            while block := response.read(CHUNK):
                out.write(block)
                bar.update(len(block))


def decompress_and_verify(compressed: Path, destination: Path, expected_sha256: str) -> None:
    """Write the decompressed bytes of the gzip file `compressed`; check their sha256."""
    digest = hashlib.sha256()
    with gzip.open(compressed, "rb") as src, open(destination, "wb") as out:
        while block := src.read(CHUNK):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != expected_sha256:
        raise ValueError(f"sha256 of the decompressed bytes is {digest.hexdigest()}, "
                         f"expected {expected_sha256}")


def download_file(name: str, sha256: str, sources: list[str], workdir: Path,
                  timeout: float) -> list[str]:
    """Put the verified, decompressed file `name` in `workdir`; return the failures seen."""
    failures = []
    fetched = workdir / f"{name}.gz"
    for source in sources:
        url = file_url(source, f"{name}.gz")
        try:
            fetch(url, fetched, timeout)
            decompress_and_verify(fetched, workdir / name, sha256)
            return failures
        except (OSError, ValueError, EOFError, zlib.error, http.client.HTTPException) as error:
            failures.append(f"{url}: {error}")
            (workdir / name).unlink(missing_ok=True)
        finally:
            fetched.unlink(missing_ok=True)
    raise DownloadError(f"{name}: no source gave a file with sha256 {sha256}. Tried:\n"
                        + "\n".join(f"  {failure}" for failure in failures)
                        + f"\nSet {SOURCE_ENV} to a folder or URL that holds {name}.gz to try it first.")


def download_all(files: dict[str, str], sources: list[str], out_dir: str | Path,
                 timeout: float) -> list[str]:
    """Download every file into `out_dir`, all or nothing. Returns the failures met on the way."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    failures = []
    try:
        for name, sha256 in files.items():
            failures += download_file(name, sha256, sources, workdir, timeout)
        workdir.chmod(0o755)  # mkdtemp makes it owner-only
        if out_dir.exists():
            shutil.rmtree(out_dir)
        workdir.rename(out_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return failures
