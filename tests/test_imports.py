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
    "train": {"torch", "matplotlib"},  # MLflow once its run starts, after the params check
    "sweep": {"torch", "mlflow"},  # Dask only once the trials start; no figures
}


@pytest.mark.parametrize("stage", NEEDS)
def test_stage_imports_only_what_it_uses(stage):
    code = (f"import runpy, sys, json; runpy.run_path({str(PROJECT / 'stages' / f'{stage}.py')!r}); "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True,
                            env={"PYTHONPATH": str(PROJECT / "src"), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout.splitlines()[-1])) == NEEDS[stage]


def test_only_the_tracking_package_imports_mlflow():
    """MLflow is the tracking package's business: the lesson's modules and the stages go through it."""
    import ast

    package = PROJECT / "src" / "regression"
    importers = []
    for path in sorted([*package.rglob("*.py"), *(PROJECT / "stages").glob("*.py")]):
        if path.is_relative_to(package / "tracking"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "mlflow" or name.startswith("mlflow.") for name in names):
                importers.append(str(path.relative_to(PROJECT)))
    assert importers == []
