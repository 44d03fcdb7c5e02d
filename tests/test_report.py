"""`make report` on a real git repo with two commits on tiny data: the lesson, then one `lr` changed.
End to end, so in `make test-all`."""

import re
import sys
from pathlib import Path

import pytest

from projects import edit_params, make_project, run

VENV = Path(sys.executable).parent.parent  # the environment `make` uses

MODEL = "softmax_nn"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_commits(tmp_path_factory, data_server):
    """A project whose HEAD~1 holds train@linear's and train@softmax_nn's results, HEAD those with
    softmax_nn's lr 0.1."""
    url, files = data_server
    project = make_project(tmp_path_factory.mktemp("report") / "project", url, files)
    for message in ("the lesson", "softmax_nn lr 0.1"):
        if message != "the lesson":
            edit_params(project, lambda params: params["train"][MODEL].update(lr=0.1))
        run(project, "dvc", "repro", "train@linear", f"train@{MODEL}")
        run(project, "git", "add", "-A")
        run(project, "git", "commit", "-qm", message)
    return project


def report(project, *args, check=True):
    return run(project, "make", "--no-print-directory", "-s", f"VENV={VENV}", "report", *args, check=check)


def test_a_changed_param_shows_both_values_the_metrics_old_and_new_and_the_curves(two_commits):
    result = report(two_commits, "BASE=HEAD~1")
    text = (two_commits / "report/report.md").read_text()
    assert text in result.stdout
    assert re.search(r"^\| train\.softmax_nn\.lr +\| 0\.05 +\| 0\.1 +\|$", text, re.M), text
    rows = {m[0]: m[1:] for m in re.findall(r"^\| softmax_nn +\| (\w+) +\| ([\d.]+) +\| ([\d.]+) +\| (.+?) +\|$",
                                            text, re.M)}
    assert rows["test_accuracy"] == ("1.0000", "1.0000", "same"), text  # tiny images: both perfect
    old, new, change = rows["test_loss"]
    assert float(old) != float(new), text
    sign, difference, words = change[0], *change[1:].split()
    assert float(sign + difference) == pytest.approx(float(new) - float(old), abs=2e-4), text
    assert words == ("better" if float(new) < float(old) else "worse")  # a loss: lower is better
    assert "Unchanged: linear." in text  # the model the change did not touch
    png = two_commits / f"report/{MODEL}-curves.png"
    assert f"]({MODEL}-curves.png)" in text and png.read_bytes().startswith(b"\x89PNG")
    assert max(len(line) for line in text.splitlines()) <= 120


def test_a_change_that_touches_no_result_says_so(two_commits):
    result = report(two_commits, "BASE=HEAD")  # the workspace is HEAD's
    assert "No params changed." in result.stdout and "No results changed." in result.stdout
    assert "## Learning curves" not in result.stdout


def test_a_base_that_does_not_exist_is_one_line_naming_it(two_commits):
    result = report(two_commits, "BASE=no-such-branch", check=False)
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if not line.startswith(("make: ", "make["))]
    assert "BASE=no-such-branch is not a commit" in line
