"""The examples of README.md and docs/*.md hold (.ci/check_readme.py): Python runs as written on the
default set-up (a project after `make run`), shell parses, and every relative link names a file."""

import importlib.util
from pathlib import Path

import pytest

from projects import BIN, PROJECT, environment

spec = importlib.util.spec_from_file_location("check_readme", PROJECT / ".ci" / "check_readme.py")
check_readme = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_readme)

PYTHON_BLOCKS = check_readme.page_blocks("python", PROJECT)


def test_the_readme_has_python_examples_and_one_promises_its_output():
    blocks = check_readme.python_blocks((PROJECT / "README.md").read_text())
    assert blocks
    assert any(check_readme.PROMISED in block for block in blocks)


def test_the_docs_pages_are_read_and_their_blocks_found():
    pages = check_readme.pages(PROJECT)
    assert pages[0] == PROJECT / "README.md"
    docs = {page.name for page in pages[1:]}
    assert {"mlflow.md", "team-server.md", "sweeps.md", "reproducibility.md", "when-things-go-wrong.md",
            "testing.md", "benchmarks.md", "layout.md"} <= docs
    python_sources = {source for source, _ in PYTHON_BLOCKS}
    assert "README.md" in python_sources and any(source.startswith("docs/") for source in python_sources)
    sh_sources = {source for source, _ in check_readme.page_blocks("sh", PROJECT)}
    assert "README.md" in sh_sources and any(source.startswith("docs/") for source in sh_sources)


def test_blocks_are_told_apart_by_language():
    text = "x\n```python\nprint(1)\n```\n```sh\nls\n```\n```\nplain\n```\n```yaml\na: 1\n```\n"
    assert check_readme.python_blocks(text) == ["print(1)\n"]
    assert check_readme.sh_blocks(text) == ["ls\n"]


def test_a_block_that_prints_other_than_it_promises_is_reported_with_its_file(tmp_path):
    assert check_readme.run_block("print('a')\n#> a\n", tmp_path) == []
    [problem] = check_readme.run_block("print('b')\n#> a\n", tmp_path, source="docs/mlflow.md")
    assert problem.startswith("docs/mlflow.md: ")
    assert "printed ['b'], docs/mlflow.md says ['a']" in problem
    [problem] = check_readme.run_block("import nonexistent_module_x\n", tmp_path)
    assert "ModuleNotFoundError" in problem


def test_every_sh_block_of_the_readme_and_docs_is_valid_shell():
    problems = [problem for source, block in check_readme.page_blocks("sh", PROJECT)
                for problem in check_readme.check_sh_block(block, source)]
    assert problems == []


def test_an_sh_block_that_is_not_valid_shell_is_reported_with_its_file():
    assert check_readme.check_sh_block("make run   # a comment\nls | \n  wc -l\n") == []
    [problem] = check_readme.check_sh_block("mutmut show <name>\n", "docs/testing.md")
    assert problem.startswith("docs/testing.md: sh block `mutmut show <name> ...`")
    assert check_readme.check_sh_block("if true; then\n", "README.md")


def test_every_relative_link_of_the_readme_and_docs_names_a_file():
    problems = [problem for page in check_readme.pages(PROJECT)
                for problem in check_readme.broken_links(page, PROJECT)]
    assert problems == []


def test_links_are_read_outside_code_and_a_missing_file_is_reported(tmp_path):
    text = ("[a](docs/a.md#part) ![b](b.png) [web](https://example.com) [top](#top) `[c](c.md)`\n"
            "```sh\necho '[d](d.md)'\n```\n")
    assert check_readme.relative_links(text) == ["docs/a.md", "b.png"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("[readme](../README.md) [gone](gone.md)\n")
    (tmp_path / "README.md").write_text("[a](docs/a.md)\n")
    assert check_readme.broken_links(tmp_path / "README.md", tmp_path) == []
    [problem] = check_readme.broken_links(tmp_path / "docs" / "a.md", tmp_path)
    assert problem.startswith("docs/a.md: link (gone.md)")


@pytest.mark.slow
@pytest.mark.parametrize("source, block", PYTHON_BLOCKS,
                         ids=[f"{source}-{n}" for n, (source, _) in enumerate(PYTHON_BLOCKS)])
def test_each_python_block_runs_as_written(reproduced, source, block, monkeypatch):
    """In a project after one `dvc repro` and nothing else (tiny data: the printed classes differ, so
    the promised output is checked on the real data by CI's .ci/check_readme.py)."""
    for key, value in environment().items():
        monkeypatch.setenv(key, value)
    assert check_readme.run_block(block, Path(reproduced[0]), str(BIN / "python"), check_output=False,
                                  source=source) == []
