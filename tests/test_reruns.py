"""What an edit re-runs, as `dvc status` tells it in a project where the pipeline has run.

A stage's deps are what makes its outputs: its script, the lesson package (src/regression) as one
folder, its params and its data. MLflow's code (src/tracking) and the team server (src/team_server)
are no stage's dep: editing them re-runs nothing (`dvc repro -f` records again), while any edit of
the lesson package re-runs every stage. tests/test_dvc_yaml.py checks the same statically.
"""

import json
import sys
from pathlib import Path

import pytest

from projects import STAGES, run

pytestmark = pytest.mark.slow

MODEL_STAGES = {name for name in STAGES if name.startswith(("train@", "sweep@"))}


def status(project: Path) -> dict:
    """{stage: [its changes]} of every stage `dvc repro` would run; {} when nothing would."""
    return json.loads(run(project, "dvc", "status", "--json").stdout or "{}")


def append_comment(project: Path, module: str) -> None:
    path = project / module
    path.write_text(f"{path.read_text()}\n# an edit that changes no behaviour\n")


def test_editing_mlflow_code_or_the_team_server_re_runs_nothing(project_copy):
    # Byte code beside the package, as Python writes it on import (unless PYTHONDONTWRITEBYTECODE
    # is set, as it may be where the tests run): .dvcignore keeps it out of the folder's hash.
    run(project_copy, sys.executable, "-m", "compileall", "-q", "src")
    assert list((project_copy / "src" / "regression" / "__pycache__").glob("*.pyc"))
    assert status(project_copy) == {}  # the copy is up to date
    append_comment(project_copy, "src/team_server/server.py")
    append_comment(project_copy, "src/tracking/record.py")
    assert status(project_copy) == {}


def test_editing_the_lesson_package_re_runs_every_stage(project_copy):
    append_comment(project_copy, "src/regression/training.py")
    changed = status(project_copy)
    assert MODEL_STAGES and MODEL_STAGES <= set(changed), sorted(MODEL_STAGES - set(changed))
    assert set(changed) == STAGES  # the lesson package is every stage's dep
    for stage in MODEL_STAGES:
        assert {"changed deps": {"src/regression": "modified"}} in changed[stage], changed[stage]
