"""regression.files: outputs written whole or not at all, in the project's one JSON layout."""

import os
import signal
import stat

import pytest

from regression.files import json_bytes, signals_held, write_bytes_atomic, write_folder_atomic, write_json


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
