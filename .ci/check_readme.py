"""Check the examples of README.md and docs/*.md: Python run as written, shell parsed, links resolved.

Usage (from the project root, after `make run`): .venv/bin/python .ci/check_readme.py [--no-output-check]

- Each ```python block runs in a fresh interpreter with the project root as its working
  directory. Lines of a block that start with `#> ` are the output the page promises: the block
  must print exactly those lines (on the real data; on other data pass `--no-output-check`).
- Each ```sh block is checked with `bash -n`: its syntax only, nothing is run. A placeholder
  such as `<name>` is a redirection to bash, so shell examples use real names or variables.
- Each relative link (`[text](path)`, `![alt](path)`) outside code must name a file or folder
  that exists, relative to the page.

Every problem names the file the block or link is in. Exit status 1 if there is any.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMISED = "#> "
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE_CODE = re.compile(r"`+[^`\n]*`+")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|//|#)", re.I)


def pages(root: Path = ROOT) -> list[Path]:
    """README.md, then every docs/*.md page in name order."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def blocks_of(text: str, language: str) -> list[str]:
    """The fenced blocks of `text` in `language` (```python, ```sh), in order."""
    return [body for lang, body in FENCE.findall(text) if lang == language]


def python_blocks(text: str) -> list[str]:
    return blocks_of(text, "python")


def sh_blocks(text: str) -> list[str]:
    return blocks_of(text, "sh")


def page_blocks(language: str, root: Path = ROOT) -> list[tuple[str, str]]:
    """(page path relative to `root`, block) for each block in `language` of README.md and docs/*.md."""
    return [(page.relative_to(root).as_posix(), block) for page in pages(root)
            for block in blocks_of(page.read_text(), language)]


def first_line(block: str) -> str:
    lines = block.strip().splitlines()
    return lines[0] if lines else ""


def run_block(block: str, project: Path, python: str = sys.executable, check_output: bool = True,
              source: str = "README.md") -> list[str]:
    """What is wrong with running the Python `block` (from the page `source`) in `project` (nothing: [])."""
    promised = [line.removeprefix(PROMISED) for line in block.splitlines() if line.startswith(PROMISED)]
    result = subprocess.run([python, "-c", block], cwd=project, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        return [f"{source}: block `{first_line(block)} ...` failed ({result.returncode}):\n"
                f"{result.stderr[-2000:]}"]
    printed = result.stdout.splitlines()
    if check_output and promised and printed != promised:
        return [f"{source}: block `{first_line(block)} ...` printed {printed}, {source} says {promised}"]
    return []


def check_sh_block(block: str, source: str = "README.md") -> list[str]:
    """What `bash -n` finds wrong in the shell `block` (from the page `source`); nothing runs."""
    result = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return [f"{source}: sh block `{first_line(block)} ...` is not valid shell (bash -n):\n"
                f"{result.stderr.strip()}"]
    return []


def relative_links(text: str) -> list[str]:
    """The relative link targets of a Markdown `text` outside code, without their #anchor."""
    prose = INLINE_CODE.sub("", FENCE.sub("", text))
    targets = (match.group(1) for match in LINK.finditer(prose))
    return [target.split("#", 1)[0] for target in targets if not EXTERNAL.match(target)]


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of `page` that names no existing file or folder."""
    source = page.relative_to(root).as_posix()
    return [f"{source}: link ({target}) names no file: {(page.parent / target).resolve()}"
            for target in relative_links(page.read_text()) if not (page.parent / target).exists()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-output-check", action="store_true", help="run the blocks, ignore `#> ` lines")
    args = parser.parse_args()
    python, sh = page_blocks("python"), page_blocks("sh")
    problems = [p for page in pages() for p in broken_links(page)]
    problems += [p for source, block in sh for p in check_sh_block(block, source)]
    failed_python = [p for source, block in python
                     for p in run_block(block, ROOT, check_output=not args.no_output_check, source=source)]
    problems += failed_python
    for problem in problems:
        print(problem, file=sys.stderr)
    if not python:
        print("README.md and docs/ have no ```python block", file=sys.stderr)
        return 1
    print(f"{len(python) - len(failed_python)} of {len(python)} Python blocks ran as written, "
          f"{len(sh)} sh blocks checked with bash -n, links checked, in {len(pages())} pages")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
