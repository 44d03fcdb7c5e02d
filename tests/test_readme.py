"""The README's Python examples run as written on the default set-up (a project after `make run`)."""

import importlib.util
from pathlib import Path

import pytest

from projects import BIN, PROJECT, environment

spec = importlib.util.spec_from_file_location("check_readme", PROJECT / ".ci" / "check_readme.py")
check_readme = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_readme)


def test_the_readme_has_python_examples_and_one_promises_its_output():
    blocks = check_readme.python_blocks((PROJECT / "README.md").read_text())
    assert len(blocks) >= 2
    assert any(check_readme.PROMISED in block for block in blocks)


def test_a_block_that_prints_other_than_it_promises_is_reported(tmp_path):
    assert check_readme.run_block("print('a')\n#> a\n", tmp_path) == []
    [problem] = check_readme.run_block("print('b')\n#> a\n", tmp_path)
    assert "printed ['b'], the README says ['a']" in problem
    [problem] = check_readme.run_block("import nonexistent_module_x\n", tmp_path)
    assert "ModuleNotFoundError" in problem


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(check_readme.python_blocks((PROJECT / "README.md").read_text()))))
def test_each_readme_python_block_runs_as_written(reproduced, index, monkeypatch):
    """In a project after one `dvc repro` and nothing else (tiny data: the printed classes differ, so
    the promised output is checked on the real data by CI's .ci/check_readme.py)."""
    for key, value in environment().items():
        monkeypatch.setenv(key, value)
    block = check_readme.python_blocks((PROJECT / "README.md").read_text())[index]
    assert check_readme.run_block(block, Path(reproduced[0]), str(BIN / "python"), check_output=False) == []
