"""The GitHub workflow passes actionlint and zizmor with no findings (both offline, from the environment)."""

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
WORKFLOW = PROJECT / ".github/workflows/ci.yml"
BIN = Path(sys.executable).parent


def lint(tool: str, path: Path) -> subprocess.CompletedProcess:
    command = {"actionlint": [str(BIN / "actionlint"), "-no-color", str(path)],
               "zizmor": [str(BIN / "zizmor"), "--offline", "--no-progress", str(path)]}[tool]
    return subprocess.run(command, capture_output=True, text=True, cwd=path.parent)


@pytest.mark.parametrize("tool", ["actionlint", "zizmor"])
def test_the_workflow_has_no_findings(tool):
    result = lint(tool, WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("tool, bad, finding", [
    ("zizmor", ("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", "actions/checkout@v4"), "unpinned-uses"),
    ("zizmor", ("persist-credentials: false\n          ", ""), "artipacked"),
    ("zizmor", ("permissions:\n  contents: read\n", ""), "excessive-permissions"),
    ("actionlint", ("timeout-minutes: 90", "timeout-minutes: ninety"), "timeout-minutes"),
])
def test_the_checks_find_what_they_guard(tmp_path, tool, bad, finding):
    """Each check fails on the workflow with one of the faults it guards against put back."""
    text = WORKFLOW.read_text()
    assert bad[0] in text
    broken = tmp_path / ".github/workflows/ci.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(bad[0], bad[1]))
    result = lint(tool, broken)
    assert result.returncode != 0 and finding in result.stdout + result.stderr, result.stdout + result.stderr
