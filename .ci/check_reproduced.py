"""After a cold run of the pipeline: fail unless it re-made the committed results byte for byte, naming what differs.

Usage (from the project root, after `make run` in a fresh clone): .venv/bin/python .ci/check_reproduced.py

The committed `dvc.lock` records the hash of every output, and `metrics/` holds the committed
headline metrics and histories. A cold `dvc repro` on any x86-64 machine with AVX2 must leave
both as they are (regression/numerics.py pins what the numbers depend on); a change of either
means the outputs depend on the machine. Each difference is named with the stage that wrote it.
"""

import subprocess
import sys

import yaml

LOCK, METRICS = "dvc.lock", "metrics"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def outputs(lock: dict) -> dict[str, tuple[str, str]]:
    """{output path: (stage, hash)} of every stage's outputs in a dvc.lock."""
    return {out["path"]: (stage, out.get("md5") or out.get("hash", ""))
            for stage, entry in lock.get("stages", {}).items() for out in entry.get("outs", [])}


def differences(committed: dict, made: dict, changed_files: list[str]) -> list[str]:
    """One line per output whose hash or file differs, with the stage that wrote it."""
    before, after = outputs(committed), outputs(made)
    lines = [f"{after.get(path, before.get(path))[0]}: {path}: "
             + (f"hash {before[path][1]} in the committed {LOCK}, {after[path][1]} here"
                if path in before and path in after else
                "missing here" if path in before else f"not in the committed {LOCK}")
             for path in sorted(before.keys() | after.keys()) if before.get(path) != after.get(path)]
    for file in changed_files:
        owner = next((stage for path, (stage, _) in after.items()
                      if file == path or file.startswith(path.rstrip("/") + "/")), "no stage")
        lines.append(f"{owner}: {file}: differs from the committed file")
    return lines


def main() -> int:
    status = git("status", "--porcelain", "--untracked-files=all", "--", LOCK, METRICS).splitlines()
    if not status:
        print(f"the cold run re-made the committed {LOCK} and {METRICS}/ byte for byte")
        return 0
    changed_files = [line[3:] for line in status if line[3:] != LOCK]
    committed = yaml.safe_load(git("show", f"HEAD:{LOCK}")) or {}
    with open(LOCK) as f:
        made = yaml.safe_load(f) or {}
    lines = differences(committed, made, changed_files)
    for line in lines or [f"{LOCK}: differs from the committed file (no output hash changed)"]:
        print(f"not reproduced: {line}", file=sys.stderr)
    print(f"The pipeline did not re-make the committed results on this machine ({git('diff', '--stat').strip()})."
          " If the code or params changed, run `make run && make sweep` and commit dvc.lock and metrics/; if not, the"
          " outputs depend on the machine (see README, Reproducibility).", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
