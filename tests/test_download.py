"""regression.download: sources tried in order, checksums of the decompressed bytes, all or nothing.

Sources are local: folders served as file:// URLs, and HTTP servers on 127.0.0.1 started
in-process for the test, some of them misbehaving (dripping, hanging, endless, bombs).
"""

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from idx_files import write_tiny_fashion_mnist
from regression import PipelineError
from regression.download import (
    CHUNK,
    DownloadError,
    decompress_and_verify,
    download_all,
    fetch,
    file_url,
    max_gzip_size,
    sources_with_override,
)
from regression.files import signals_held
from regression.params import read_yaml
from regression.params_schema import ExpectedFile

PROJECT = Path(__file__).resolve().parents[1]
SOURCE_ENV = read_yaml(PROJECT / "params.yaml")["datasets"]["fashion-mnist"]["source_env"]
TIMEOUT = 5
SHORT_TIMEOUT = 1.0  # for the tests that wait for a deadline
# A deadline that works ends a download in about SHORT_TIMEOUT; one that does not leaves it
# dripping for minutes or hanging for ever. The bound between them leaves room for a loaded machine.
BOUNDED_SECONDS = 30
DRIP_SECONDS = 0.2  # between two bytes of a dripping source


def folder_url(folder) -> str:
    return folder.as_uri() + "/"


def expected_files(folder, checksums) -> dict[str, ExpectedFile]:
    """{name: sha256} of the files in `folder`, with the size of their decompressed bytes added."""
    sizes = {name: len(gzip.decompress((folder / f"{name}.gz").read_bytes())) for name in checksums}
    return {name: ExpectedFile(sha256=sha256, bytes=sizes[name]) for name, sha256 in checksums.items()}


@pytest.fixture
def mirror(tmp_path):
    """A good source folder; returns (folder, {name: ExpectedFile of the decompressed bytes})."""
    folder = tmp_path / "mirror"
    return folder, expected_files(folder, write_tiny_fashion_mnist(folder, n_train=20, n_test=10))


@pytest.fixture
def bad_mirror(tmp_path, mirror):
    """A copy of the mirror with a truncated gzip, a wrong-content file (of the right size) and a
    missing file."""
    good, files = mirror
    bad = tmp_path / "bad-mirror"
    shutil.copytree(good, bad)
    truncated = bad / "train-images-idx3-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:-40])
    labels = bad / "train-labels-idx1-ubyte.gz"
    wrong_labels = bytes((b + 1) % 10 for b in gzip.decompress(labels.read_bytes()))
    labels.write_bytes(gzip.compress(wrong_labels))
    (bad / "t10k-images-idx3-ubyte.gz").unlink()
    return bad


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """Start an HTTP server for a folder: serve(folder[, handler class]) -> its base URL ('/'-ended)."""
    servers = []

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


@pytest.fixture
def hanging_source():
    """An HTTP source whose server accepts connections and never answers: .url, .connections
    (the sockets accepted) and .connected (set on the first)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so the accepting thread sees `stop`
    source = types.SimpleNamespace(url=f"http://127.0.0.1:{listener.getsockname()[1]}/",
                                   connections=[], connected=threading.Event())
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                source.connections.append(listener.accept()[0])
                source.connected.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield source
    stop.set()
    thread.join()
    for connection in source.connections:
        connection.close()
    listener.close()


def refused_source() -> str:
    """An HTTP URL on a port of 127.0.0.1 that nothing listens on."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def mirror_with(tmp_path, mirror_folder, name, raw: bytes) -> Path:
    """A copy of the mirror whose `name`.gz holds the gzip of `raw`."""
    copy = tmp_path / f"mirror-with-bad-{name}"
    shutil.copytree(mirror_folder, copy)
    (copy / f"{name}.gz").write_bytes(gzip.compress(raw))
    return copy


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

    failures = download_all(files, [source], out_dir, TIMEOUT, SOURCE_ENV)

    assert failures == []
    assert_downloaded(out_dir, folder, files)
    assert leftovers(out_dir.parent, out_dir) == []


@pytest.mark.parametrize("bad_transport", ["file", "http"])
def test_corrupt_source_falls_through_to_the_next(tmp_path, mirror, bad_mirror, serve, bad_transport):
    folder, files = mirror
    bad = folder_url(bad_mirror) if bad_transport == "file" else serve(bad_mirror)
    good = serve(folder) if bad_transport == "file" else folder_url(folder)
    out_dir = tmp_path / "data" / "fashion-mnist"

    failures = download_all(files, [bad, good], out_dir, TIMEOUT, SOURCE_ENV)

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


class CutShortChunkedHandler(QuietHandler):
    """Announces a whole file as one chunk, sends half of it and hangs up."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n" % len(data) + data[:len(data) // 2])
        self.close_connection = True


def test_connection_lost_mid_transfer_falls_through(tmp_path, mirror, serve):
    """A dropped chunked transfer raises http.client.IncompleteRead, not an OSError."""
    folder, files = mirror
    cut_short = serve(folder, CutShortChunkedHandler)
    out_dir = tmp_path / "out"

    failures = download_all(files, [cut_short, folder_url(folder)], out_dir, TIMEOUT, SOURCE_ENV)

    assert_downloaded(out_dir, folder, files)
    assert len(failures) == len(files)
    assert all(failure.startswith(cut_short) for failure in failures)


def test_every_source_failing_raises_and_leaves_nothing(tmp_path, mirror, bad_mirror, serve):
    folder, files = mirror
    (tmp_path / "data").mkdir()
    sources = [folder_url(tmp_path / "no-such-folder"), serve(bad_mirror), folder_url(bad_mirror)]
    out_dir = tmp_path / "data" / "fashion-mnist"

    with pytest.raises(DownloadError) as caught:
        download_all(files, sources, out_dir, TIMEOUT, SOURCE_ENV)

    message = str(caught.value)
    assert isinstance(caught.value, PipelineError)  # so a stage reports it in one message
    name = next(iter(files))  # the first file is the one that failed
    assert name in message and files[name].sha256 in message
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

    assert download_all(files, [serve(recompressed)], out_dir, TIMEOUT, SOURCE_ENV) == []
    assert_downloaded(out_dir, folder, files)


def test_existing_output_is_replaced_only_on_success(tmp_path, mirror, bad_mirror):
    folder, files = mirror
    out_dir = tmp_path / "fashion-mnist"
    out_dir.mkdir()
    (out_dir / "old-file").write_text("from an earlier run")

    with pytest.raises(DownloadError):
        download_all(files, [folder_url(bad_mirror)], out_dir, TIMEOUT, SOURCE_ENV)
    assert [p.name for p in out_dir.iterdir()] == ["old-file"]
    assert (out_dir / "old-file").read_text() == "from an earlier run"
    assert leftovers(tmp_path, out_dir) == []

    download_all(files, [folder_url(folder)], out_dir, TIMEOUT, SOURCE_ENV)
    assert_downloaded(out_dir, folder, files)  # the old file is gone
    assert leftovers(tmp_path, out_dir) == []


class DrippingHandler(QuietHandler):
    """Sends the headers at once, then the body a byte at a time: each read is quick, the whole is not."""

    def do_GET(self):
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client hung up
            for i in range(len(data)):
                time.sleep(DRIP_SECONDS)
                self.wfile.write(data[i:i + 1])


def test_dripping_source_fails_at_the_deadline_and_is_not_tried_again(tmp_path, mirror, serve):
    folder, files = mirror
    dripping = serve(folder, DrippingHandler)
    out_dir = tmp_path / "out"

    started = time.monotonic()
    failures = download_all(files, [dripping, folder_url(folder)], out_dir, SHORT_TIMEOUT, SOURCE_ENV)
    elapsed = time.monotonic() - started

    assert_downloaded(out_dir, folder, files)
    first = file_url(dripping, f"{next(iter(files))}.gz")
    assert failures == [f"{first}: not complete within the 1 s deadline "
                        f"(so {dripping} is skipped for the remaining files)"]
    assert SHORT_TIMEOUT <= elapsed < BOUNDED_SECONDS
    whole_drip = DRIP_SECONDS * (folder / f"{next(iter(files))}.gz").stat().st_size
    assert whole_drip > 4 * BOUNDED_SECONDS  # so the bound above tells a deadline from none


def test_hanging_source_costs_one_deadline_not_one_per_file(tmp_path, mirror, hanging_source):
    folder, files = mirror
    out_dir = tmp_path / "out"

    started = time.monotonic()
    failures = download_all(files, [hanging_source.url, folder_url(folder)], out_dir, SHORT_TIMEOUT, SOURCE_ENV)
    elapsed = time.monotonic() - started

    assert_downloaded(out_dir, folder, files)
    assert len(hanging_source.connections) == 1  # tried for the first file only, not once per file
    assert SHORT_TIMEOUT <= elapsed < BOUNDED_SECONDS
    assert len(failures) == 1 and "deadline" in failures[0]


def test_unreachable_source_is_named_when_a_later_file_fails(tmp_path, mirror):
    """A refused source is tried for the first file only; a later failure still lists it, and why."""
    folder, files = mirror
    first, last = list(files)[0], list(files)[-1]
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    (partial / f"{last}.gz").unlink()
    refused = refused_source()

    with pytest.raises(DownloadError) as caught:
        download_all(files, [refused, folder_url(partial)], tmp_path / "out", TIMEOUT, SOURCE_ENV)

    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{last}: ")
    assert lines[1].startswith(f"  {refused}: skipped, down since {first}.gz: ")
    assert "Connection refused" in lines[1]
    assert lines[2].startswith(f"  {file_url(folder_url(partial), f'{last}.gz')}: ")


def test_gzip_bomb_is_cut_off_at_the_expected_size(tmp_path, mirror):
    folder, files = mirror
    name = "train-images-idx3-ubyte"
    size = files[name].bytes
    bomb = mirror_with(tmp_path, folder, name, bytes(10 * size))

    written = tmp_path / name
    with pytest.raises(ValueError, match=f"more than the expected {size} bytes"):
        decompress_and_verify(bomb / f"{name}.gz", written, files[name])
    assert written.stat().st_size <= size

    failures = download_all(files, [folder_url(bomb), folder_url(folder)], tmp_path / "out", TIMEOUT, SOURCE_ENV)
    assert_downloaded(tmp_path / "out", folder, files)
    assert len(failures) == 1
    assert failures[0].startswith(f"{file_url(folder_url(bomb), f'{name}.gz')}: decompresses to more "
                                  f"than the expected {size} bytes (from ")


def test_short_file_is_rejected(tmp_path, mirror):
    folder, files = mirror
    name = "t10k-labels-idx1-ubyte"
    size = files[name].bytes
    short = mirror_with(tmp_path, folder, name, gzip.decompress((folder / f"{name}.gz").read_bytes())[:-1])

    failures = download_all(files, [folder_url(short), folder_url(folder)], tmp_path / "out", TIMEOUT, SOURCE_ENV)

    assert_downloaded(tmp_path / "out", folder, files)
    assert failures == [f"{file_url(folder_url(short), f'{name}.gz')}: "
                        f"decompresses to {size - 1} bytes, expected {size}"]


def expected_of(data: bytes) -> ExpectedFile:
    return ExpectedFile(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


def test_a_file_of_many_reads_is_counted_whole(tmp_path):
    """The real files are hundreds of reads long; the tiny mirror's fit in one."""
    data = os.urandom(3 * CHUNK + 1)
    compressed, written = tmp_path / "f.gz", tmp_path / "f"
    compressed.write_bytes(gzip.compress(data))

    decompress_and_verify(compressed, written, expected_of(data))
    assert written.read_bytes() == data
    with pytest.raises(ValueError, match=f"more than the expected {len(data) - 1} bytes"):
        decompress_and_verify(compressed, written, expected_of(data[:-1]))


def test_a_gzip_bomb_is_refused_before_the_rest_of_it_is_decompressed(tmp_path):
    """Not decompressed whole in memory first: here a truncated tail, which decompressing the
    whole file would reach first, is never read."""
    data = os.urandom(8 * CHUNK)
    compressed = tmp_path / "bomb.gz"
    whole = gzip.compress(data)
    compressed.write_bytes(whole[:len(whole) // 2])  # about 4 reads' worth, then cut off

    with pytest.raises(ValueError, match=f"more than the expected {CHUNK} bytes"):
        decompress_and_verify(compressed, tmp_path / "bomb", expected_of(data[:CHUNK]))


class EndlessHandler(QuietHandler):
    """Streams zeros until the client hangs up."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        with contextlib.suppress(OSError):
            while True:
                self.wfile.write(bytes(1 << 16))


def test_endless_download_is_cut_off_at_the_size_a_gzip_can_take(tmp_path, mirror, serve):
    folder, files = mirror
    endless = serve(folder, EndlessHandler)

    failures = download_all(files, [endless, folder_url(folder)], tmp_path / "out", TIMEOUT, SOURCE_ENV)

    assert_downloaded(tmp_path / "out", folder, files)
    assert len(failures) == len(files)  # a bad file, not a source found down
    # The size stopped each one, not the deadline (which says "not complete within").
    cut_off = r"sent more than the \d+ bytes that a gzip of the expected size can take"
    assert all(f.startswith(endless) and re.search(cut_off, f) for f in failures), failures


def test_a_download_may_be_exactly_max_bytes_long_not_one_byte_more(tmp_path):
    source = tmp_path / "f.gz"
    source.write_bytes(os.urandom(1000))

    fetch(source.as_uri(), tmp_path / "fetched", 1000, TIMEOUT)
    assert (tmp_path / "fetched").read_bytes() == source.read_bytes()
    with pytest.raises(ValueError, match="sent more than the 999 bytes"):
        fetch(source.as_uri(), tmp_path / "fetched", 999, TIMEOUT)


def test_signals_are_held_until_the_block_is_done():
    """A SIGTERM that comes while the output is swapped into place is raised after the swap."""
    class Stop(BaseException):
        pass

    def stop(signum, frame):
        raise Stop

    steps = []
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(Stop):
            with signals_held():
                os.kill(os.getpid(), signal.SIGTERM)
                steps.append("done")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert steps == ["done"]


def test_sigterm_during_the_stage_cleans_up_and_keeps_the_old_output(tmp_path, hanging_source):
    """The stage, run as dvc runs it, is stopped while it waits on a source that never answers."""
    project = tmp_path / "project"
    for folder in ("src", "stages"):
        shutil.copytree(PROJECT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = read_yaml(PROJECT / "params.yaml")
    params["datasets"]["fashion-mnist"].update(sources=[hanging_source.url], timeout_seconds=60)
    (project / "params.yaml").write_text(json.dumps(params, indent=2))  # JSON is YAML 1.2
    old_output = project / "data" / "fashion-mnist"
    old_output.mkdir(parents=True)
    (old_output / "old-file").write_text("from an earlier run")
    env = {key: value for key, value in os.environ.items() if key != SOURCE_ENV} | {"PYTHONPATH": "src"}

    stage = subprocess.Popen([sys.executable, "stages/download.py", "fashion-mnist", "data/fashion-mnist"], cwd=project,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert hanging_source.connected.wait(10), "the stage never reached the source"
        stage.send_signal(signal.SIGTERM)
        _, stderr = stage.communicate(timeout=10)
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait()

    assert stage.returncode == 128 + signal.SIGTERM
    errors = [line for line in stderr.splitlines() if line.startswith("error")]
    assert errors == ["error: interrupted by SIGTERM"]
    assert "Traceback" not in stderr
    assert [p.name for p in (project / "data").iterdir()] == ["fashion-mnist"]  # no .*.tmp folder
    assert [p.name for p in old_output.iterdir()] == ["old-file"]
    assert (old_output / "old-file").read_text() == "from an earlier run"


def test_download_stage_does_not_load_torch():
    """Nothing the download stage imports loads torch, so it starts in a fraction of a second."""
    check = "import sys, regression.stage, regression.download; sys.exit('torch' in sys.modules)"
    subprocess.run([sys.executable, "-c", check], env=os.environ | {"PYTHONPATH": str(PROJECT / "src")},
                   check=True)


def test_sources_unchanged_without_override(monkeypatch):
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    sources = ["http://a.example/", "file:///srv/b/"]
    result = sources_with_override(sources, SOURCE_ENV)
    assert result == sources and result is not sources
    monkeypatch.setenv(SOURCE_ENV, "   ")
    assert sources_with_override(sources, SOURCE_ENV) == sources


@pytest.mark.parametrize("override, listed", [("http://mirror.example/fm/", "http://mirror.example/fm/"),
                                              ("http://mirror.example/FM-X", "http://mirror.example/FM-X/"),
                                              ("http://mirror.example/FM-X/", "http://mirror.example/FM-X")])
def test_override_url_goes_first_and_is_not_repeated(monkeypatch, override, listed):
    """The same source with or without a final slash is one source."""
    monkeypatch.setenv(SOURCE_ENV, override)
    sources = ["http://a.example/", listed, "file:///srv/b/"]
    assert sources_with_override(sources, SOURCE_ENV) == [override, "http://a.example/", "file:///srv/b/"]


def test_override_folder_becomes_a_file_uri(tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "fashion-mnist"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(SOURCE_ENV, "shared/fashion-mnist")  # relative to the working directory
    sources = ["http://a.example/", shared.as_uri()]
    assert sources_with_override(sources, SOURCE_ENV) == [shared.resolve().as_uri(), "http://a.example/"]


def test_override_folder_is_used_for_the_download(tmp_path, mirror, monkeypatch):
    folder, files = mirror
    monkeypatch.setenv(SOURCE_ENV, str(folder))
    sources = sources_with_override([folder_url(tmp_path / "no-such-folder")], SOURCE_ENV)
    assert download_all(files, sources, tmp_path / "out", TIMEOUT, SOURCE_ENV) == []
    assert_downloaded(tmp_path / "out", folder, files)


class ShortHandler(QuietHandler):
    """Announces the whole file (Content-Length), sends half of it and hangs up."""

    def do_GET(self):
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:len(data) // 2])
        self.close_connection = True


def test_a_body_shorter_than_announced_is_reported_as_such(tmp_path, mirror, serve):
    """Not as a broken gzip: the failure says how many of the announced bytes came."""
    folder, files = mirror
    short = serve(folder, ShortHandler)

    failures = download_all(files, [short, folder_url(folder)], tmp_path / "out", TIMEOUT, SOURCE_ENV)

    assert_downloaded(tmp_path / "out", folder, files)
    sizes = {name: (folder / f"{name}.gz").stat().st_size for name in files}
    assert failures == [f"{file_url(short, f'{name}.gz')}: ended after {size // 2} of the {size} bytes "
                        "announced" for name, size in sizes.items()]


def test_each_download_shows_a_progress_bar_in_bytes_that_it_clears(tmp_path, mirror, serve, capsys):
    folder, files = mirror

    assert download_all(files, [serve(folder)], tmp_path / "out", TIMEOUT, SOURCE_ENV) == []

    err = capsys.readouterr().err
    for name in files:
        # The file's name, the share done of the size announced (in kB for the images, of over
        # 1,000 bytes), its speed in bytes.
        size = r"[\d.]+k" if "images" in name else r"[\d.]+"
        assert re.search(rf"\r{name}\.gz:\s+0%\|\s*\| 0\.00/{size} \[00:00<\?, \?B/s\]", err), err
    assert "\n" not in err and err.endswith("\r")  # each bar is cleared, not left behind


class StallingHandler(QuietHandler):
    """Sends the headers and one byte at once, a second byte shortly before the client's deadline,
    then nothing (for at most STALL_SECONDS)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data[:1])
            self.wfile.flush()
            time.sleep(0.8 * STALL_TIMEOUT)
            self.wfile.write(data[1:2])
            self.wfile.flush()
            time.sleep(STALL_SECONDS)
        self.close_connection = True


STALL_TIMEOUT = 1.5  # the deadline for the stalling source
STALL_SECONDS = 15


def test_a_body_that_stalls_late_fails_at_the_deadline_not_a_whole_deadline_later(tmp_path, mirror, serve):
    """Each read waits only for the time left: the read after a byte that came just before the
    deadline does not get a deadline of its own."""
    folder, files = mirror
    stalling = serve(folder, StallingHandler)

    started = time.monotonic()
    failures = download_all(files, [stalling, folder_url(folder)], tmp_path / "out", STALL_TIMEOUT, SOURCE_ENV)
    elapsed = time.monotonic() - started

    assert_downloaded(tmp_path / "out", folder, files)
    assert len(failures) == 1 and "not complete within the 1.5 s deadline" in failures[0]
    # With a whole deadline for that read it would end at 0.8 + 1 deadlines.
    assert STALL_TIMEOUT <= elapsed < 1.4 * STALL_TIMEOUT


@pytest.mark.parametrize("source", ["http://a.example/fm", "http://a.example/fm/", "file:///srv/fm/"])
def test_a_file_is_looked_for_inside_the_source_folder(source):
    assert file_url(source, "t10k-labels-idx1-ubyte.gz") == source.rstrip("/") + "/t10k-labels-idx1-ubyte.gz"


def test_a_folder_missing_one_file_is_still_tried_for_the_others(tmp_path, mirror):
    """A missing file in a file:// source is a bad file, not a source that is down."""
    folder, files = mirror
    first, *others = files
    lacks_first, only_first = tmp_path / "lacks-first", tmp_path / "only-first"
    shutil.copytree(folder, lacks_first)
    (lacks_first / f"{first}.gz").unlink()
    only_first.mkdir()
    shutil.copy(folder / f"{first}.gz", only_first)

    sources = [folder_url(lacks_first), folder_url(only_first)]
    failures = download_all(files, sources, tmp_path / "out", TIMEOUT, SOURCE_ENV)

    assert_downloaded(tmp_path / "out", folder, files)
    [failure] = failures
    assert failure.startswith(file_url(folder_url(lacks_first), f"{first}.gz")) and "skipped" not in failure


def largest_gzip(size: int) -> int:
    """The size of the largest gzip of `size` bytes: stored (incompressible) deflate blocks of at
    most 65,535 bytes, 5 bytes each, after a header with a file name (at most 255 bytes) and
    before an 8-byte trailer."""
    return 10 + 256 + size + 5 * (size // 65535 + 1) + 8


def test_the_largest_gzip_is_as_computed():
    data = os.urandom(300_000)
    buffer = io.BytesIO()
    with gzip.GzipFile("n" * 250, "wb", compresslevel=0, fileobj=buffer) as f:
        f.write(data)
    assert len(gzip.compress(data, compresslevel=9)) <= len(buffer.getvalue()) <= largest_gzip(len(data))


@pytest.mark.parametrize("size", [0, 30, 47_040_016, 10**9])
def test_a_download_may_be_as_large_as_any_gzip_of_the_expected_bytes_and_little_more(size):
    """The cap on a download passes any gzip of the expected size, even of incompressible bytes,
    and cuts off a source sending more than 1% over it (beyond a first 128 KiB)."""
    assert largest_gzip(size) <= max_gzip_size(size) <= size * 1.01 + (1 << 17)
