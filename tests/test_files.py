"""regression.files: outputs written whole or not at all, in the project's one JSON layout."""

import errno
import os
import re
import signal
import stat
from pathlib import Path

import pytest

from regression import PipelineError, files
from regression.files import (json_bytes, signals_held, write_bytes_atomic, write_folder_atomic, write_json,
                              write_outputs)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_json_is_indented_by_two_and_ends_with_a_newline():
    # Committed metrics files: one value a line, so that a diff shows which number changed.
    assert json_bytes({"test_accuracy": 0.83, "w": [2.0, -3.4]}) == (
        b'{\n  "test_accuracy": 0.83,\n  "w": [\n    2.0,\n    -3.4\n  ]\n}\n')


def test_a_file_is_written_in_new_folders_readable_by_all_and_replaces_the_old(tmp_path):
    path = tmp_path / "metrics" / "model" / "history.json"
    write_json(path, {"epoch": 1})
    assert path.read_bytes() == json_bytes({"epoch": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # as any other output, not owner-only
    write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"new" and leftovers(path.parent) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_bytes_atomic(path, "not bytes")
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_a_folder_is_replaced_by_exactly_the_files_given_or_left_as_it_was(tmp_path):
    folder = tmp_path / "evaluation"
    write_folder_atomic(folder, {"a.csv": b"1", "b.png": b"2"})
    write_folder_atomic(folder, {"c.csv": b"3"})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {"c.csv": b"3"}
    with pytest.raises(FileNotFoundError):
        write_folder_atomic(folder, {"d.csv": b"4", "no/such/folder.csv": b"5"})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {"c.csv": b"3"}
    assert leftovers(tmp_path) == []


def test_a_signal_during_the_block_arrives_after_it(tmp_path):
    received = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            assert received == []
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outputs_published_from_another_thread_are_published(tmp_path):
    """Signals reach only the main thread: from another (tests, a tool recording in a thread)
    holding them does nothing, and publishing works as in the main thread."""
    import threading

    errors = []

    def publish():
        try:
            write_outputs({tmp_path / "model.pt": b"new"})
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
    thread = threading.Thread(target=publish)
    thread.start()
    thread.join()
    assert errors == [] and (tmp_path / "model.pt").read_bytes() == b"new"


def test_a_file_is_written_beside_its_place_hidden_then_renamed_over_the_old_in_one_step(tmp_path,
                                                                                     monkeypatch):
    """Just before the rename, a reader of the folder sees the old file and one hidden temporary
    file named after it, already whole (so no glob of outputs picks it up, and the rename stays on
    one file system)."""
    path = tmp_path / "metrics.json"
    path.write_bytes(b"old")
    seen = []

    def replace(source, destination):
        seen.append((Path(source).parent, Path(source).name, Path(source).read_bytes(), path.read_bytes()))
        real_replace(source, destination)

    real_replace = os.replace
    monkeypatch.setattr(files.os, "replace", replace)
    write_bytes_atomic(path, b"new")

    [(folder, name, written, old)] = seen
    assert folder == tmp_path and re.fullmatch(r"\.metrics\.json\.\w+\.tmp", name), name
    assert (written, old) == (b"new", b"old")
    assert path.read_bytes() == b"new" and leftovers(tmp_path) == []


def test_outputs_are_written_in_new_folders_and_each_old_file_is_replaced_in_one_step(tmp_path, monkeypatch):
    """A reader sees each old file until the new one takes its place: never neither."""
    evaluation, history = tmp_path / "evaluation", tmp_path / "metrics" / "softmax_nn" / "history.json"
    write_outputs({evaluation: {"a.csv": b"1"}, history: b"old"})
    seen = []

    def replace(source, destination):
        seen.append((Path(destination).name, Path(destination).exists()))
        real_replace(source, destination)

    real_replace = os.replace
    monkeypatch.setattr(files.os, "replace", replace)
    write_outputs({evaluation: {"b.csv": b"2"}, history: b"new"})

    assert seen == [("evaluation", False), ("history.json", True)]  # a folder moves aside first
    assert {p.name: p.read_bytes() for p in evaluation.iterdir()} == {"b.csv": b"2"}
    assert history.read_bytes() == b"new"
    assert leftovers(tmp_path) == [] and leftovers(history.parent) == []


def test_a_failed_removal_neither_hides_the_write_s_error_nor_stops_the_clean_up(tmp_path, monkeypatch):
    """A staged folder that cannot be removed after a failed write: the write's own error is
    raised, the other temporary files are still removed and every earlier output stays."""
    evaluation, model = tmp_path / "evaluation", tmp_path / "model.pt"
    write_outputs({evaluation: {"a.csv": b"old"}, model: b"old"})
    (tmp_path / "blocked").write_bytes(b"a file where a folder would go")

    def rmdir(path, *args, **kwargs):
        if Path(path).name.startswith(".evaluation."):
            raise PermissionError(errno.EACCES, "refused", str(path))
        real_rmdir(path, *args, **kwargs)

    real_rmdir = os.rmdir
    monkeypatch.setattr(files.os, "rmdir", rmdir)
    with pytest.raises(PipelineError, match=r"blocked/x\.json: cannot be written"):
        write_outputs({evaluation: {"a.csv": b"new"}, model: b"new", tmp_path / "blocked" / "x.json": b"{}"})

    assert {p.name: p.read_bytes() for p in evaluation.iterdir()} == {"a.csv": b"old"}
    assert model.read_bytes() == b"old"
    [left] = leftovers(tmp_path)  # the folder that could not be removed, no staged model.pt
    assert re.fullmatch(r"\.evaluation\.\w+\.tmp", left), left


def test_a_full_disk_is_one_line_naming_the_output_and_keeps_the_earlier_ones(tmp_path, monkeypatch):
    """A write failing half-way (ENOSPC) is a PipelineError naming the output and why, and leaves
    every earlier output and no temporary file."""
    model, metrics = tmp_path / "model.pt", tmp_path / "metrics.json"
    write_outputs({model: b"old", metrics: b"old"})
    real_write = Path.write_bytes

    def write_bytes(self, data):
        if self.name.startswith(".metrics.json."):
            real_write(self, data[:1])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(PipelineError) as raised:
        write_outputs({model: b"new", metrics: b"new"})
    assert str(raised.value) == (f"{metrics}: cannot be written (No space left on device); "
                                 "the last good outputs are kept")
    assert (model.read_bytes(), metrics.read_bytes()) == (b"old", b"old") and leftovers(tmp_path) == []


def test_what_a_killed_write_left_behind_does_not_stop_the_next(tmp_path):
    """`kill -9` in the middle of `write_outputs` leaves its hidden temporary folder; the next run
    writes all the same."""
    evaluation = tmp_path / "evaluation"
    pid = os.fork()
    if pid == 0:  # the run that is killed once its first file is written
        try:
            real_write = Path.write_bytes
            Path.write_bytes = lambda self, data: (real_write(self, data), os._exit(9))
            write_outputs({evaluation: {"a.csv": b"1", "b.csv": b"1"}})
        finally:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] >> 8 == 9
    assert len(leftovers(tmp_path)) == 1 and not evaluation.exists()

    write_outputs({evaluation: {"a.csv": b"2"}})
    assert {p.name: p.read_bytes() for p in evaluation.iterdir()} == {"a.csv": b"2"}
