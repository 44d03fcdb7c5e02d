"""Run the README's Python examples as written, from the project root, and check the output they document.

Usage (from the project root, after `make run`): .venv/bin/python .ci/check_readme.py

Each ```python block runs in a fresh interpreter with the project root as its working directory.
Lines of a block that start with `#> ` are the output the README promises: the block must print
exactly those lines (on the real data; on other data pass `--no-output-check`).
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PROMISED = "#> "


def python_blocks(readme: str) -> list[str]:
    return BLOCK.findall(readme)


def run_block(block: str, project: Path, python: str = sys.executable, check_output: bool = True) -> list[str]:
    """What is wrong with running `block` in `project` (nothing: [])."""
    promised = [line.removeprefix(PROMISED) for line in block.splitlines() if line.startswith(PROMISED)]
    result = subprocess.run([python, "-c", block], cwd=project, capture_output=True, text=True, timeout=300)
    first_line = block.strip().splitlines()[0]
    if result.returncode != 0:
        return [f"README block `{first_line} ...` failed ({result.returncode}):\n{result.stderr[-2000:]}"]
    printed = result.stdout.splitlines()
    if check_output and promised and printed != promised:
        return [f"README block `{first_line} ...` printed {printed}, the README says {promised}"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-output-check", action="store_true", help="run the blocks, ignore `#> ` lines")
    args = parser.parse_args()
    blocks = python_blocks((ROOT / "README.md").read_text())
    problems = [p for block in blocks for p in run_block(block, ROOT, check_output=not args.no_output_check)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not blocks:
        print("README.md has no ```python block", file=sys.stderr)
        return 1
    print(f"{len(blocks) - len(problems)} of {len(blocks)} README Python blocks ran as written")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
