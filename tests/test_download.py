"""regression.download: sources tried in order, checksums of the decompressed bytes, all or nothing.

Sources are local: folders served as file:// URLs, and an HTTP server on 127.0.0.1 started
in-process for the test.
"""

import functools
import gzip
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from idx_files import write_tiny_fashion_mnist
from regression import PipelineError
from regression.download import (
    SOURCE_ENV,
    DownloadError,
    download_all,
    file_url,
    sources_with_override,
)

TIMEOUT = 5


def folder_url(folder) -> str:
    return folder.as_uri() + "/"


@pytest.fixture
def mirror(tmp_path):
    """A good source folder; returns (folder, {name: sha256 of the decompressed bytes})."""
    folder = tmp_path / "mirror"
    files = write_tiny_fashion_mnist(folder, n_train=20, n_test=10)
    return folder, files


@pytest.fixture
def bad_mirror(tmp_path, mirror):
    """A copy of the mirror with a truncated gzip, a wrong-content file and a missing file."""
    good, files = mirror
    bad = tmp_path / "bad-mirror"
    shutil.copytree(good, bad)
    truncated = bad / "train-images-idx3-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:-40])
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01 not the labels"))
    (bad / "t10k-images-idx3-ubyte.gz").unlink()
    return bad


@pytest.fixture
def serve():
    """Start an HTTP server for a folder: serve(folder[, handler class]) -> its base URL ('/'-ended)."""
    servers = []

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(folder, handler_class=QuietHandler):
        handler = functools.partial(handler_class, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def assert_downloaded(out_dir, mirror_folder, files):
    """out_dir holds exactly the decompressed files, byte for byte."""
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(files)
    for name in files:
        expected = gzip.decompress((mirror_folder / f"{name}.gz").read_bytes())
        assert (out_dir / name).read_bytes() == expected


def leftovers(parent, out_dir):
    """Temporary work folders download_all left beside out_dir."""
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{out_dir.name}.")]


@pytest.mark.parametrize("transport", ["file", "http"])
def test_all_files_download_decompress_and_verify(tmp_path, mirror, serve, transport):
    folder, files = mirror
    source = folder_url(folder) if transport == "file" else serve(folder)
    out_dir = tmp_path / "data" / "fashion-mnist"

    failures = download_all(files, [source], out_dir, TIMEOUT)

    assert failures == []
    assert_downloaded(out_dir, folder, files)
    assert leftovers(out_dir.parent, out_dir) == []


@pytest.mark.parametrize("bad_transport", ["file", "http"])
def test_corrupt_source_falls_through_to_the_next(tmp_path, mirror, bad_mirror, serve, bad_transport):
    folder, files = mirror
    bad = folder_url(bad_mirror) if bad_transport == "file" else serve(bad_mirror)
    good = serve(folder) if bad_transport == "file" else folder_url(folder)
    out_dir = tmp_path / "data" / "fashion-mnist"

    failures = download_all(files, [bad, good], out_dir, TIMEOUT)

    assert_downloaded(out_dir, folder, files)
    # One failure per broken file, each naming the bad URL; the good file needed no fallback.
    assert len(failures) == 3
    text = "\n".join(failures)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        assert file_url(bad, f"{name}.gz") in text
    assert file_url(bad, "t10k-labels-idx1-ubyte.gz") not in text
    assert good not in text
    wrong_content = next(f for f in failures if "train-labels" in f)
    assert "sha256" in wrong_content


class CutShortChunkedHandler(http.server.SimpleHTTPRequestHandler):
    """Announces a whole file as one chunk, sends half of it and hangs up."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n" % len(data) + data[:len(data) // 2])
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_connection_lost_mid_transfer_falls_through(tmp_path, mirror, serve):
    """A dropped chunked transfer raises http.client.IncompleteRead, not an OSError."""
    folder, files = mirror
    cut_short = serve(folder, CutShortChunkedHandler)
    out_dir = tmp_path / "out"

    failures = download_all(files, [cut_short, folder_url(folder)], out_dir, TIMEOUT)

    assert_downloaded(out_dir, folder, files)
    assert len(failures) == len(files)
    assert all(failure.startswith(cut_short) for failure in failures)


def test_every_source_failing_raises_and_leaves_nothing(tmp_path, mirror, bad_mirror, serve):
    folder, files = mirror
    (tmp_path / "data").mkdir()
    sources = [folder_url(tmp_path / "no-such-folder"), serve(bad_mirror), folder_url(bad_mirror)]
    out_dir = tmp_path / "data" / "fashion-mnist"

    with pytest.raises(DownloadError) as caught:
        download_all(files, sources, out_dir, TIMEOUT)

    message = str(caught.value)
    assert isinstance(caught.value, PipelineError)  # so a stage reports it in one message
    name = next(iter(files))  # the first file is the one that failed
    assert name in message and files[name] in message
    for source in sources:
        assert file_url(source, f"{name}.gz") in message
    # Each attempt says why it failed.
    lines = [line for line in message.splitlines() if "://" in line]
    assert len(lines) == len(sources)
    assert all(line.split(".gz: ", 1)[1].strip() for line in lines)
    assert "No such file" in lines[0]
    assert not out_dir.exists()
    assert list((tmp_path / "data").iterdir()) == []


def test_recompressed_copy_passes_the_checksum(tmp_path, mirror, serve):
    """The checksum is of the decompressed bytes, so a mirror may recompress the files."""
    folder, files = mirror
    recompressed = tmp_path / "recompressed"
    recompressed.mkdir()
    for name in files:
        original = (folder / f"{name}.gz").read_bytes()
        again = gzip.compress(gzip.decompress(original), compresslevel=1, mtime=12345)
        assert again != original
        (recompressed / f"{name}.gz").write_bytes(again)
    out_dir = tmp_path / "out"

    assert download_all(files, [serve(recompressed)], out_dir, TIMEOUT) == []
    assert_downloaded(out_dir, folder, files)


def test_existing_output_is_replaced_only_on_success(tmp_path, mirror, bad_mirror):
    folder, files = mirror
    out_dir = tmp_path / "fashion-mnist"
    out_dir.mkdir()
    (out_dir / "old-file").write_text("from an earlier run")

    with pytest.raises(DownloadError):
        download_all(files, [folder_url(bad_mirror)], out_dir, TIMEOUT)
    assert [p.name for p in out_dir.iterdir()] == ["old-file"]
    assert (out_dir / "old-file").read_text() == "from an earlier run"
    assert leftovers(tmp_path, out_dir) == []

    download_all(files, [folder_url(folder)], out_dir, TIMEOUT)
    assert_downloaded(out_dir, folder, files)  # the old file is gone
    assert leftovers(tmp_path, out_dir) == []


def test_sources_unchanged_without_override(monkeypatch):
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    sources = ["http://a.example/", "file:///srv/b/"]
    result = sources_with_override(sources)
    assert result == sources and result is not sources
    monkeypatch.setenv(SOURCE_ENV, "   ")
    assert sources_with_override(sources) == sources


def test_override_url_goes_first_and_is_not_repeated(monkeypatch):
    monkeypatch.setenv(SOURCE_ENV, "http://mirror.example/fm/")
    sources = ["http://a.example/", "http://mirror.example/fm/", "file:///srv/b/"]
    assert sources_with_override(sources) == [
        "http://mirror.example/fm/", "http://a.example/", "file:///srv/b/"]


def test_override_folder_becomes_a_file_uri(tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "fashion-mnist"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(SOURCE_ENV, "shared/fashion-mnist")  # relative to the working directory
    sources = ["http://a.example/", shared.as_uri()]
    assert sources_with_override(sources) == [shared.resolve().as_uri(), "http://a.example/"]


def test_override_folder_is_used_for_the_download(tmp_path, mirror, monkeypatch):
    folder, files = mirror
    monkeypatch.setenv(SOURCE_ENV, str(folder))
    sources = sources_with_override([folder_url(tmp_path / "no-such-folder")])
    assert download_all(files, sources, tmp_path / "out", TIMEOUT) == []
    assert_downloaded(tmp_path / "out", folder, files)
