"""Each stage imports only what it uses: torch, torchvision, matplotlib and MLflow cost seconds to load.

Each stage script is imported (not run) in a fresh interpreter, and the heavy packages found in
`sys.modules` afterwards are compared with what the stage needs.
"""

import json
import subprocess
import sys

import pytest

from projects import PROJECT

HEAVY = ("torch", "torchvision", "matplotlib", "mlflow")
NEEDS = {
    "params": set(),  # the check every stage waits for: a second
    "download": set(),
    "prepare": {"torch", "torchvision"},  # torchvision's IDX reader, once
    "generate": set(),  # numpy draws the synthetic data
    "samples": {"matplotlib"},
    "train": {"torch", "matplotlib"},  # MLflow only once training is done (tracking.record)
    "sweep": {"torch"},  # Dask once the trials start, MLflow once they and the refit are done; no figures
}


@pytest.mark.parametrize("stage", NEEDS)
def test_stage_imports_only_what_it_uses(stage):
    code = (f"import runpy, sys, json; runpy.run_path({str(PROJECT / 'stages' / f'{stage}.py')!r}); "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True,
                            env={"PYTHONPATH": str(PROJECT / "src"), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout.splitlines()[-1])) == NEEDS[stage]


# What each part of the project may not import, anywhere in it (functions' own imports too):
# the lesson's package knows nothing of MLflow or of the tracking code around it; a stage records
# through `tracking`, never the team server's code; `tracking` is a client of any server.
FORBIDDEN = {
    "src/regression": ("mlflow", "tracking", "team_server"),
    "stages": ("team_server",),
    "src/tracking": ("team_server",),
    "src/dvc_tools": ("mlflow", "tracking", "team_server"),
}


def imported(path) -> set[str]:
    """Every module `path` imports, at its top or inside a function."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module or "")
    return names


@pytest.mark.parametrize("folder", FORBIDDEN)
def test_each_part_imports_only_what_it_may(folder):
    """MLflow is the tracking package's business (the lesson's modules never import it, nor
    `tracking`), and the team server's code is the server's own."""
    forbidden = FORBIDDEN[folder]
    files = sorted((PROJECT / folder).rglob("*.py"))
    assert files, folder
    importers = [f"{path.relative_to(PROJECT)}: {name}" for path in files for name in sorted(imported(path))
                 if any(name == top or name.startswith(f"{top}.") for top in forbidden)]
    assert importers == []


def test_the_check_sees_imports_inside_functions_too():
    """What the check reads: `record` imports MLflow only inside its functions, the stages `tracking` at their top."""
    assert {"mlflow", "mlflow.entities"} <= imported(PROJECT / "src/tracking/record.py")
    assert "tracking.record" in imported(PROJECT / "stages/train.py") & imported(PROJECT / "stages/sweep.py")
