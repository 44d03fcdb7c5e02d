"""Working as a team through a DVC remote and a git remote: push, fresh clone, pull, nothing to re-run.

The git remote is a bare repo and the DVC remote a folder, both in a temporary folder; the
remote is set with `make remote`, as README says.
"""

import json

import pytest

from projects import run, stages_run

pytestmark = pytest.mark.slow


def make(project, *args, venv):
    return run(project, "make", "--no-print-directory", f"VENV={venv}", *args)


def clean(project) -> bool:
    return json.loads(run(project, "dvc", "status", "--json").stdout or "{}") == {}


def test_push_clone_pull_gives_a_clean_status_and_exp_travels(project_copy, tmp_path):
    import sys
    from pathlib import Path

    venv = Path(sys.executable).parent.parent
    origin, store = tmp_path / "origin.git", tmp_path / "dvc-store"
    run(tmp_path, "git", "init", "-q", "--bare", str(origin))
    project = project_copy
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "results")
    # An experiment run before any remote exists must still be shareable afterwards.
    run(project, "dvc", "exp", "run", "-n", "early-exp", "-S", "train.linear.lr=0.04")
    run(project, "git", "checkout", "-q", "--", "params.yaml", "dvc.lock", "metrics")
    run(project, "dvc", "checkout", "-q")

    make(project, "remote", f"URL={store}", venv=venv)
    assert "store" in run(project, "dvc", "remote", "list").stdout
    assert "store" not in (project / ".dvc/config").read_text()  # git-tracked config untouched
    run(project, "dvc", "push")
    run(project, "git", "remote", "add", "origin", str(origin))
    run(project, "git", "push", "-q", "origin", "HEAD:main")
    run(project, "dvc", "exp", "push", "origin", "early-exp")

    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", "-b", "main", str(origin), str(clone))
    make(clone, "remote", f"URL={store}", venv=venv)
    run(clone, "dvc", "pull")
    assert clean(clone)
    assert stages_run(run(clone, "dvc", "repro").stdout) == set()

    run(clone, "dvc", "exp", "pull", "origin", "early-exp")
    run(clone, "dvc", "exp", "apply", "early-exp")
    assert "store" in run(clone, "dvc", "remote", "list").stdout  # `exp apply` did not drop the remote
    run(clone, "dvc", "pull")
    assert clean(clone)
    applied = json.loads(run(clone, "dvc", "params", "diff", "--json").stdout)
    assert applied["params.yaml"]["train.linear.lr"]["new"] == 0.04
    assert stages_run(run(clone, "dvc", "repro").stdout) == set()
