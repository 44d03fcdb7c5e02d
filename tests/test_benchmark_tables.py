"""The benchmarks write their own tables into docs/benchmarks.md (benchmarks/tables.py): each script
replaces its own section and nothing else, adds it when missing, keeps every line within 120
columns, and names the machine and the commit. And no benchmark reads a stage phase that no stage
reports."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
BENCHMARKS = PROJECT / "benchmarks"


@pytest.fixture(scope="module")
def scripts():
    """benchmarks/tables.py, pipeline.py, store.py and sweep.py, imported as the scripts import them."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import pipeline
        import store
        import sweep
        import tables

        yield {"tables": tables, "pipeline": pipeline, "store": store, "sweep": sweep}
    finally:
        sys.path.remove(str(BENCHMARKS))
        for name in ("tables", "pipeline", "store", "sweep"):
            sys.modules.pop(name, None)


@pytest.fixture
def tables(scripts):
    return scripts["tables"]


RAN = {"cpu": "AMD EPYC 7B13 64-Core Processor", "cores": 2, "usable_cores": 2,
       "date": "2025-01-02 03:04 UTC", "commit": "0123456789ab", "changed": []}

# A page as the benchmarks find it: prose (CRLF endings, non-ASCII, trailing spaces) before the
# marked area, then two sections, the area's last line without a newline.
BEFORE = ("# Benchmarks\r\n\r\nProse with ümlauts, ≤ signs and trailing spaces   \r\n\r\n## Results\n\n"
          "<!-- benchmark tables: written by the benchmarks, do not edit -->\n\n")
PIPELINE = "<!-- begin: pipeline -->\n### Pipeline\n\nold pipeline table\n<!-- end: pipeline -->\n"
STORE = "<!-- begin: store -->\n### Tracking store\n\nNot run yet.\n<!-- end: store -->"


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "benchmarks.md"
    path.write_bytes(text.encode("utf-8"))
    return path


def test_a_script_replaces_its_own_section_and_keeps_every_other_byte(tables, tmp_path):
    path = page(tmp_path, BEFORE + PIPELINE + "\n" + STORE)
    lines = tables.section("pipeline", ["| a | b |", "| --- | --: |", "| x | 1.00 |"], RAN, "make benchmark")
    tables.write_section("pipeline", lines, path)
    text = path.read_bytes().decode("utf-8")
    assert text == BEFORE + "\n".join(lines) + "\n" + "\n" + STORE
    assert "old pipeline table" not in text
    # again, with other figures: the same place, the rest still byte for byte
    tables.write_section("pipeline", lines[:-3] + ["| y | 2.00 |", "", lines[-1]], path)
    again = path.read_bytes().decode("utf-8")
    assert again.startswith(BEFORE) and again.endswith("\n\n" + STORE) and "| y | 2.00 |" in again
    assert "| x | 1.00 |" not in again


def test_the_last_section_is_replaced_even_without_a_final_newline(tables, tmp_path):
    path = page(tmp_path, BEFORE + PIPELINE + "\n" + STORE)
    lines = tables.section("store", ["store table"], RAN, "python benchmarks/store.py")
    tables.write_section("store", lines, path)
    assert path.read_bytes().decode("utf-8") == BEFORE + PIPELINE + "\n" + "\n".join(lines) + "\n"


def test_a_missing_section_is_added_at_the_end_of_the_marked_area(tables, tmp_path):
    original = BEFORE + PIPELINE + "\n" + STORE
    path = page(tmp_path, original)
    lines = tables.section("sweep", ["sweep table"], RAN, "python benchmarks/sweep.py")
    tables.write_section("sweep", lines, path)
    text = path.read_bytes().decode("utf-8")
    assert text == original + "\n\n" + "\n".join(lines) + "\n"
    assert text.index("<!-- end: store -->") < text.index("<!-- begin: sweep -->")
    # written once, it is then replaced in place, not added again
    tables.write_section("sweep", tables.placeholder("sweep"), path)
    assert path.read_bytes().decode("utf-8").count("<!-- begin: sweep -->") == 1


@pytest.mark.parametrize("text, why", [
    (PIPELINE, "no marked area"),
    (PIPELINE + BEFORE, "the section before the marked area"),
    (BEFORE + PIPELINE + PIPELINE, "the section twice"),
    (BEFORE + "<!-- begin: pipeline -->\nno end\n", "a begin without its end"),
    (BEFORE + "<!-- end: pipeline -->\n<!-- begin: pipeline -->\n", "the end before the begin"),
])
def test_a_page_whose_markers_are_wrong_is_left_as_it_was(tables, tmp_path, text, why):
    path = page(tmp_path, text)
    with pytest.raises(ValueError):
        tables.write_section("pipeline", tables.placeholder("pipeline"), path)
    assert path.read_bytes() == text.encode("utf-8"), why
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmarks.md"]


def test_the_page_is_replaced_by_renaming_a_file_written_beside_it(tables, tmp_path, monkeypatch):
    path = page(tmp_path, BEFORE)
    path.chmod(0o640)
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(tables.os, "replace", lambda src, dst: (renamed.append((Path(src), Path(dst))),
                                                                real_replace(src, dst)))
    tables.write_section("pipeline", tables.placeholder("pipeline"), path)
    [(source, target)] = renamed
    assert source.parent == tmp_path and source != path and target == path
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmarks.md"]


def test_every_line_of_a_section_fits_120_columns(tables):
    ran = RAN | {"cpu": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz with a very long name " * 2,
                 "changed": [f"src/regression/module_{n}.py" for n in range(12)]}
    wide = [[f"cell {n} " * 2 for n in range(6)]]
    lines = tables.section("store", tables.table([f"column {n}" for n in range(6)], wide * 3), ran,
                           "python benchmarks/store.py --sizes 100 1000 10000 --backends sqlite postgresql")
    assert max(map(len, lines)) <= tables.WIDTH
    assert "module_11.py" in "\n".join(lines)
    with pytest.raises(ValueError, match="120 columns"):
        tables.replace_section(BEFORE, "store", ["<!-- begin: store -->", "x" * 121, "<!-- end: store -->"])


def test_a_table_lines_up_when_it_fits_and_is_valid_markdown_either_way(tables):
    narrow = tables.table(["what", "time"], [["import torch", "1.23 s"], ["a|b", "10.00 s"]], right={1})
    assert narrow == ["| what         |    time |",
                      "| ------------ | ------: |",
                      "| import torch |  1.23 s |",
                      "| a\\|b         | 10.00 s |"]
    wide = tables.table(["a", "b"], [["x" * 60, "y" * 60]], right={1})
    assert wide == ["| a | b |", "| --- | --: |", f"| {'x' * 60} | {'y' * 60} |"]


def test_a_section_names_the_machine_the_date_the_commit_and_the_command(tables):
    ran = RAN | {"changed": ["benchmarks/pipeline.py"]}
    lines = tables.section("pipeline", ["table"], ran, "make benchmark")
    text = "\n".join(lines)
    assert lines[:2] == ["<!-- begin: pipeline -->", "### Pipeline"] and lines[-1] == "<!-- end: pipeline -->"
    for words in ("AMD EPYC 7B13 64-Core Processor, 2 cores", "2025-01-02 03:04 UTC", "`0123456789ab`",
                  "uncommitted changes to `benchmarks/pipeline.py`", "`make benchmark`"):
        assert words in text
    assert "(1 usable)" in "\n".join(tables.about(RAN | {"usable_cores": 1}, "x"))


def test_the_machine_is_read_from_proc_cpuinfo_and_the_commit_from_git(tables, tmp_path):
    cpuinfo = Path("/proc/cpuinfo").read_text()
    ran = tables.machine(PROJECT)
    assert ran["cpu"] == tables.cpu_model(cpuinfo) != "unknown CPU"
    assert ran["cores"] == os.cpu_count()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT, capture_output=True, text=True).stdout
    assert ran["commit"] and head.startswith(ran["commit"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", ran["date"])
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True).stdout
    assert set(ran["changed"]) <= set(tracked.splitlines())  # the tracked files that differ, by name
    assert "docs/benchmarks.md" not in ran["changed"]  # the page the benchmarks write is no change
    assert tables.machine(PROJECT, working_tree=False)["changed"] == []
    assert tables.machine(tmp_path)["commit"] is None  # not a repository: said so, not a failure


def test_the_cpu_model_is_found_on_x86_and_arm(tables):
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC   7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC   7B13\n"
    assert tables.cpu_model(x86) == "AMD EPYC 7B13"
    assert tables.cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\nHardware\t: BCM2835\n") == "BCM2835"
    assert tables.cpu_model("") == "unknown CPU"


def stage(name, wall, **phases):
    return {"stage": name, "exit_code": 0, "startup": 1.87, "phases": phases, "wall": wall,
            "peak_rss_mb": 1234.5, "child_peak_rss_mb": 1100.0}


def pipeline_figures(scale):
    """Figures of the sizes a run on a slow machine gives (scale 1), or far beyond (scale 10)."""
    model = {"training": 12.34 * scale, "evaluation": 1.25, "recording": 2.5}
    models = ("linear", "softmax_scratch", "softmax_nn", "mlp")
    cold = [stage("params", 0.5), stage("download", 12.3), stage("prepare", 3.2), stage("generate", 1.1),
            *(stage(f"train@{m}", 13.12 * scale, **model) for m in models)]
    loop = {"seconds": 12.34, "test_accuracy": 0.8331, "threads": 16, "capability": "AVX512"}
    exp = stage("train@softmax_nn", 13.12 * scale, **model)
    exp_runs = [{"lr": lr, "seconds": 14.05 * scale, "stage": exp} for lr in ("0.1", "0.2", "0.3")]
    return {"import_torch_s": 1.5, "cold_repro_s": 123.4 * scale, "cold_stages": cold, "noop_repro_s": 0.8,
            "noop_stages_run": 0, "project_loop_s": 4.3, "project_accuracy": 0.8331,
            "lesson_loop_s": 98.5 * scale, "lesson_accuracy": 0.8329, "pinned_loop": loop,
            "native_loop": loop, "exp_runs": exp_runs}


def store_results(scale):
    row = {what: 12.34 * scale for what in STORE_TIMED} | {"compare right": True, "promote right": True,
                                                          "summary right": True, "UI right": True}
    return {name: {str(s): row | {"build s": 1234.0, "compare right": s != 100} for s in (100, 1000, 10000)}
            for name in ("sqlite", "postgresql")}


STORE_TIMED = ("make compare", "make promote", "summary", "forced train", "recording", "UI first page")


def sweep_results(scale):
    grid = {"lr": [0.05, 0.1, 0.2, 0.5], "epochs": [10], "batch_size": [100, 500], "weight_decay": [0]}
    dask = {"wall": 123.4 * scale, "trials_wall": 120.1 * scale, "trials_per_minute": 12.34,
            "refit_test_accuracy": 0.846}
    row = {"grid": grid, "trials": 8, "dvc queue -j 2": {"wall": 246.8 * scale, "trials_per_minute": 1.23},
           "dask, 1 workers": dask, "dask, 2 workers": dask, "speed-up, dask 2 workers / queue": 2.5}
    return {"grids": {"params.yaml": row, "short trials": row},
            "scikit-learn": [{"C": 1.0, "fit_seconds": 123.4, "test_accuracy": 0.8452},
                             {"C": 0.1, "fit_seconds": 98.7, "test_accuracy": 0.8431}]}


@pytest.mark.parametrize("scale", [1, 10])
def test_each_benchmarks_section_fits_120_columns_and_shows_its_figures(scripts, tmp_path, scale):
    pipeline, store, sweep, tables = (scripts[name] for name in ("pipeline", "store", "sweep", "tables"))
    assert store.TIMED == STORE_TIMED
    sizes = [100, 1000, 10000]
    bodies = {"pipeline": pipeline.markdown(pipeline.results(pipeline_figures(scale))),
              "store": store.markdown(store.rows_of(store_results(scale), sizes), sizes),
              "sweep": sweep.markdown(sweep_results(scale))}
    path = page(tmp_path, BEFORE)
    for name, body in bodies.items():
        tables.write_section(name, tables.section(name, body, RAN, f"python benchmarks/{name}.py"), path)
    text = path.read_bytes().decode("utf-8")
    section_lines = text[len(BEFORE):].splitlines()
    assert max(map(len, section_lines)) <= 120
    for figure in ("| import torch", "1.50 s", f"{98.5 * scale:.2f} s", "train@softmax_nn, exp lr=0.3",
                   f"{12.34 * scale:.2f}", "| sqlite ", "WRONG at 100", "**NOT met**", "| dask, 2 workers",
                   f"{120.1 * scale:.1f}", "0.8452"):
        assert figure in text, figure
    # figures of a slow machine's sizes leave every table lined up (each row as long as its header)
    for name, lines in bodies.items() if scale == 1 else ():
        blocks = "\n".join(line if line.startswith("| ") else "" for line in lines).split("\n\n")
        tables_of = [block.strip("\n").splitlines() for block in blocks if block.strip("\n")]
        assert tables_of, name
        for rows in tables_of:
            assert {len(row) for row in rows} == {len(rows[0])}, (name, rows)


def phases_entered() -> set[str]:
    sources = [*(PROJECT / "stages").glob("*.py"), *(PROJECT / "src").rglob("*.py")]
    return {name for path in sources for name in re.findall(r"phases\(\"([^\"]+)\"\)", path.read_text())}


def phases_read() -> dict[str, set[str]]:
    patterns = [r"phases\"?\]\[\"([^\"]+)\"\]", r"phases\"?\]\.get\(\"([^\"]+)\"", r"phases\[\"([^\"]+)\"\]",
                r"\"([^\"]+)\" in \w+\[\"phases\"\]"]
    return {path.name: {name for pattern in patterns for name in re.findall(pattern, path.read_text())}
            for path in BENCHMARKS.glob("*.py")}


def test_the_benchmarks_read_only_phases_the_stages_report():
    entered = phases_entered()
    assert {"training", "evaluation", "recording", "data load", "trials", "refit"} <= entered
    read = phases_read()
    assert read["pipeline.py"] >= {"training", "evaluation"} and "recording" in read["store.py"]
    assert "trials" in read["sweep.py"]
    assert {name: names - entered for name, names in read.items() if names - entered} == {}


def test_a_script_publishes_its_section_or_stops_saying_why(tables, tmp_path, capsys):
    path = page(tmp_path, BEFORE)
    tables.publish("sweep", ["sweep table"], RAN, "sweep.py", page=path)
    text = path.read_bytes().decode("utf-8")
    assert text.startswith(BEFORE) and "sweep table" in text and "`0123456789ab`" in text
    assert f"section sweep of {path} written" in capsys.readouterr().out
    broken = page(tmp_path, PIPELINE)  # no marked area: the figures stay in the JSON file, the page as it was
    with pytest.raises(SystemExit, match="the pipeline section was not written"):
        tables.publish("pipeline", ["table"], RAN, "pipeline.py", page=broken)
    assert broken.read_bytes() == PIPELINE.encode("utf-8")
