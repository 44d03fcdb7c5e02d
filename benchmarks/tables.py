"""The benchmarks' result tables in docs/benchmarks.md, written by the benchmarks from their figures.

The page's results end it: from the line AREA to the end of the page is the benchmarks' own. In it
each script owns one section, the lines from `<!-- begin: NAME -->` to `<!-- end: NAME -->`, and
replaces it whole on each run, every other byte of the page left as it was; a section not there yet
is added at the end. The page is replaced in one step: written beside itself under a temporary name,
then renamed over the old one, so a reader sees the old page or the new, never half of one.

Each section names what it ran on: the CPU (/proc/cpuinfo), its cores, the date and the git commit.
Every line of a section is at most WIDTH columns; a table is padded to line up when that fits.
"""

import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
AREA = "<!-- benchmark tables: written by the benchmarks, do not edit -->"
WIDTH = 120
# Each script's section: its heading, and the command that fills it.
SECTIONS = {
    "pipeline": ("Pipeline", "make benchmark"),
    "store": ("Tracking store", ".venv/bin/python benchmarks/store.py"),
    "sweep": ("Sweep", ".venv/bin/python benchmarks/sweep.py"),
}


def begin(name: str) -> str:
    return f"<!-- begin: {name} -->"


def end(name: str) -> str:
    return f"<!-- end: {name} -->"


def cpu_model(cpuinfo: str) -> str:
    """The CPU's name in /proc/cpuinfo's text (x86's "model name"; other fields elsewhere)."""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "hardware", "cpu model", "processor"):
        if fields.get(key) and not fields[key].isdigit():
            return " ".join(fields[key].split())
    return "unknown CPU"


def git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def machine(root: Path = ROOT, working_tree: bool = True) -> dict:
    """What a benchmark ran on: the CPU, its cores, the date (UTC) and the git commit, as they are
    when it copies the project (before its first measurement).

    `working_tree`: the benchmark measured the working tree's files (a copy of them), so the tracked
    files that differ from the commit are named too (this page aside: the benchmarks write it);
    False when it measured the commit itself (a `git clone`).
    """
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    changed = []
    if working_tree:
        page = PAGE.relative_to(ROOT).as_posix()
        names = git(root, "diff", "--name-only", "HEAD", "--", ".", f":(exclude){page}")
        changed = sorted((names or "").splitlines())
    return {"cpu": cpu_model(cpuinfo), "cores": os.cpu_count() or 0,
            "usable_cores": len(os.sched_getaffinity(0)),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": git(root, "rev-parse", "--short=12", "HEAD"), "changed": changed}


def command_line(script: str, args: list[str] | None = None) -> str:
    """The command that ran, as a person would type it from the project root."""
    return shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if args is None else args)])


def wrap(text: str) -> list[str]:
    """A paragraph or a list item ("- ...") as lines of at most WIDTH columns, a list item's
    continuations indented under its text."""
    indent = " " * (len(text) - len(text.lstrip("-* ")))
    return textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def about(ran: dict, command: str) -> list[str]:
    """The lines naming the machine, the date, the commit and the command."""
    cores = f"{ran['cores']} cores" + (f" ({ran['usable_cores']} usable)"
                                       if ran["usable_cores"] != ran["cores"] else "")
    commit = f"`{ran['commit']}`" if ran["commit"] else "unknown (not a git repository)"
    if ran["changed"]:
        commit += " with uncommitted changes to " + ", ".join(f"`{name}`" for name in ran["changed"])
    return [*wrap(f"- machine: {ran['cpu']}, {cores}"), *wrap(f"- date: {ran['date']}"),
            *wrap(f"- commit: {commit}"), *wrap(f"- command: `{command}`")]


def escape(cell: str) -> str:
    return str(cell).replace("|", "\\|")


def table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    """A Markdown table (GitHub's); the columns in `right` right-aligned. Padded so that the columns
    line up in the page's text when every line still fits WIDTH columns, else not padded."""
    header, rows = [escape(c) for c in header], [[escape(c) for c in row] for row in rows]
    widths = [max(3, len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]

    def lines(pad: bool) -> list[str]:
        def line(cells):
            return "| " + " | ".join(c if not pad else c.rjust(w) if i in right else c.ljust(w)
                                     for i, (c, w) in enumerate(zip(cells, widths))) + " |"

        dashes = [w if pad else 3 for w in widths]
        rule = "| " + " | ".join("-" * (d - 1) + ":" if i in right else "-" * d
                                 for i, d in enumerate(dashes)) + " |"
        return [line(header), rule, *(line(row) for row in rows)]

    padded = lines(True)
    return padded if max(map(len, padded)) <= WIDTH else lines(False)


def section(name: str, body: list[str], ran: dict, command: str) -> list[str]:
    """A script's whole section: its markers, heading, what it ran on, and `body`."""
    title, _ = SECTIONS[name]
    return [begin(name), f"### {title}", "", *about(ran, command), "", *body, "", end(name)]


def placeholder(name: str) -> list[str]:
    """The section of a script that has not run yet: which command fills it."""
    title, command = SECTIONS[name]
    return [begin(name), f"### {title}", "", f"Not run yet: `{command}` writes this section.", "", end(name)]


def replace_section(text: str, name: str, lines: list[str]) -> str:
    """`text` with the section `name` (its markers included, as `lines` must be) replaced by `lines`,
    or, when it has none, with `lines` added at the end of the page. Every other byte is kept."""
    if lines[0] != begin(name) or lines[-1] != end(name):
        raise ValueError(f"a section must run from {begin(name)} to {end(name)}")
    too_wide = [line for line in lines if len(line) > WIDTH]
    if too_wide:
        raise ValueError(f"lines over {WIDTH} columns in section {name}: {too_wide}")
    new = "".join(line + "\n" for line in lines)
    old = text.splitlines(keepends=True)
    at = [n for n, line in enumerate(old) if line.strip() == AREA]
    if len(at) != 1:
        raise ValueError(f"the page must have the line {AREA} once (it has it {len(at)} times)")
    starts = [n for n, line in enumerate(old) if line.strip() == begin(name)]
    ends = [n for n, line in enumerate(old) if line.strip() == end(name)]
    if not starts and not ends:
        before = text if not text or text.endswith("\n") else text + "\n"
        return before + ("" if before.endswith("\n\n") else "\n") + new
    if len(starts) != 1 or len(ends) != 1 or not at[0] < starts[0] < ends[0]:
        raise ValueError(f"the page must have {begin(name)} once, after {AREA}, and {end(name)} once "
                         f"after it (lines {[n + 1 for n in starts]} and {[n + 1 for n in ends]})")
    return "".join(old[:starts[0]]) + new + "".join(old[ends[0] + 1:])


def write_section(name: str, lines: list[str], page: Path = PAGE) -> None:
    """Replace (or add) the section `name` of `page`, atomically: a temporary file beside it, renamed."""
    text = replace_section(page.read_bytes().decode("utf-8"), name, lines)
    fd, temporary = tempfile.mkstemp(dir=page.parent, prefix=f".{page.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, page.stat().st_mode & 0o7777)
        os.replace(temporary, page)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def publish(name: str, body: list[str], ran: dict, script: str, page: Path = PAGE) -> None:
    """Write the script's section of the page from `body`, naming the machine, date and commit `ran`
    (`machine()`, taken when the benchmark copied the project: the commit may move while it runs)."""
    try:
        write_section(name, section(name, body, ran, command_line(script)), page)
    except (OSError, ValueError) as error:
        sys.exit(f"{page}: the {name} section was not written: {error}")
    print(f"section {name} of {page} written")
