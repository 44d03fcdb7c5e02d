"""Before the pipeline runs: fail if the committed dvc.lock is not from the committed code and params.

Usage (from the project root): .venv/bin/python .ci/check_lock.py

`dvc.lock` and `metrics/` are committed as the results of the committed pipeline. After a
change to a stage's code or params, `make run` rewrites them; forgetting to commit them leaves
results that no longer match the code. In a fresh clone the data and outputs are missing (that
is expected); a modified code file or param is not.
"""

import json
import subprocess
import sys
from pathlib import Path


def stale_entries(status: dict) -> list[str]:
    """Each stage's code, params or pipeline definition that differs from what dvc.lock records."""
    stale = []
    for stage, entries in status.items():
        for entry in entries:
            if not isinstance(entry, dict):  # e.g. "changed command", "always changed"
                stale.append(f"{stage}: {entry}")
                continue
            for path, change in entry.get("changed deps", {}).items():
                if isinstance(change, dict):  # params.yaml: {key: change}
                    stale += [f"{stage}: {path} {key} {what}" for key, what in change.items()]
                elif change != "deleted":  # a data input not pulled yet is fine
                    stale.append(f"{stage}: {path} {change}")
    return stale


def main() -> int:
    dvc = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(dvc), "status", "--json"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"dvc status failed:\n{result.stdout}{result.stderr}", file=sys.stderr)
        return 1
    stale = stale_entries(json.loads(result.stdout or "{}"))
    for line in stale:
        print(f"stale dvc.lock: {line}", file=sys.stderr)
    if stale:
        print("The committed dvc.lock and metrics/ are not from the committed code and params: "
              "run `make run && make sweep` and commit dvc.lock and metrics/.", file=sys.stderr)
        return 1
    print("dvc.lock matches the committed code and params")
    return 0


if __name__ == "__main__":
    sys.exit(main())
