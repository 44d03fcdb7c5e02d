"""A static check that keeps dvc.yaml honest.

DVC re-runs a stage only when one of its listed deps or params changes. Each stage lists its
script, the lesson package as one folder (src/regression), its params and its data; MLflow's code
(src/tracking) and the team server (src/team_server) are no stage's dep, so editing them re-runs
nothing. That holds only if nothing a stage's outputs are made from lives outside its deps: every
module a stage script loads from src/ is in src/regression or in src/tracking (which only records),
and src/regression imports neither tracking, team_server nor mlflow. Every params section a stage
lists must exist, and `dvc exp run -S` must change one line of params.yaml.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "src/regression"  # the lesson package, every stage's one code dep besides its script
RECORDING = "src/tracking"  # MLflow: a stage imports it to record, its outputs do not come from it
NOT_DEPS = (RECORDING, "src/team_server")  # no stage's deps: editing them re-runs nothing
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
MAX_LINES = 120  # dvc.yaml, the map of the project, read in a screen or two
WIDTH = 120  # columns of `make dag`


def lookup(tree, dotted: str):
    """params['a']['b'] for 'a.b'; KeyError if any part is missing."""
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def substitute(value, key, item):
    """${key} and ${item.x} in every string of a `do` template."""
    if isinstance(value, str):
        value = value.replace("${key}", key)
        return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), value)
    if isinstance(value, list):
        return [substitute(v, key, item) for v in value]
    if isinstance(value, dict):
        return {substitute(k, key, item): substitute(v, key, item) for k, v in value.items()}
    return value


def expand_stages() -> dict[str, dict]:
    """dvc.yaml's stages with `foreach` expanded over the params.yaml section it names."""
    stages = {}
    for name, stage in DVC["stages"].items():
        if "foreach" not in stage:
            stages[name] = stage
            continue
        over = re.fullmatch(r"\$\{(.+)\}", stage["foreach"].strip())
        assert over, f"{name}: foreach is not a ${{...}} reference to params.yaml"
        for key, item in lookup(PARAMS, over.group(1)).items():
            stages[f"{name}@{key}"] = substitute(stage["do"], key, item)
    return stages


STAGES = expand_stages()


def paths(entries) -> list[str]:
    """deps/outs entries are either paths or {path: options}."""
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries or []]


def stage_script(stage: dict) -> str:
    scripts = re.findall(r"\bstages/\w+\.py\b", stage["cmd"])
    assert len(scripts) == 1, f"expected one stages/*.py in {stage['cmd']!r}"
    return scripts[0]


def test_dvc_yaml_has_the_expected_stages():
    """The expansion above works (otherwise the checks below would check nothing)."""
    per_dataset = {f"{stage}@{dataset}" for stage in ("download", "prepare", "samples") for dataset in PARAMS["datasets"]}
    assert per_dataset | {"params", "generate"} <= set(STAGES)
    assert {name for name in STAGES if name.startswith("train@")} == {f"train@{m}" for m in PARAMS["train"]}


@pytest.mark.parametrize("name", STAGES)
def test_stage_code_deps_exist(name):
    """A code dep that no longer exists (a renamed script or package) is a stale entry."""
    for dep in paths(STAGES[name].get("deps")):
        if dep.startswith(("src/", "stages/")):
            assert (ROOT / dep).exists(), f"{name}: dep {dep} does not exist"


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(f"{folder}/")


@pytest.mark.parametrize("name", STAGES)
def test_stage_deps_are_its_script_and_the_lesson_package_not_mlflow(name):
    """Editing the lesson package re-runs every stage; editing MLflow's code or the server, none."""
    deps = paths(STAGES[name].get("deps"))
    script = stage_script(STAGES[name])
    assert script in deps, f"{name}: its script {script} is not in deps"
    assert PACKAGE in deps, f"{name}: the lesson package {PACKAGE} is not in deps"
    listed = [dep for dep in deps if any(under(dep, folder) for folder in NOT_DEPS)]
    assert not listed, f"{name}: lists {listed}; nothing under {NOT_DEPS} is a dep (editing it runs nothing)"


def module_files(name: str) -> list[Path]:
    """The files under src/ that importing the dotted `name` loads: each package's __init__.py on
    the way (a folder without one is a namespace package, which loads no file) and the module's
    file; nothing for a name from outside src/ (torch) or one that is not a module (`regression.X`)."""
    found, folder = [], SRC
    for part in name.split("."):
        if (folder / part).is_dir():
            folder = folder / part
            if (folder / "__init__.py").is_file():
                found.append(folder / "__init__.py")
        elif (folder / f"{part}.py").is_file():
            found.append(folder / f"{part}.py")
            break
        else:
            break
    return found


def imported_names(path: Path) -> set[str]:
    """The dotted names a file imports anywhere in it (in functions too), relative ones resolved:
    `from regression import data` gives {"regression", "regression.data"}."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, `level - 1` packages up
                package = path.parent.relative_to(SRC).parts
                package = package[:len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def loaded_from_src(script: Path) -> set[str]:
    """Every file under src/ that running `script` can load, directly or through other modules,
    as paths from the project root (src/regression/data.py, ...)."""
    pending, seen = {script}, set()
    while pending:
        path = pending.pop()
        if path not in seen:
            seen.add(path)
            pending |= {f for name in imported_names(path) for f in module_files(name)}
    return {str(path.relative_to(ROOT)) for path in seen - {script}}


def test_import_follower_follows_indirect_and_namespace_imports():
    """Control: the train stage reaches tracking/store.py only through tracking/record.py, and the
    server's imports are followed as well (the check below would see a stage that loads them)."""
    assert "tracking.store" not in imported_names(ROOT / "stages" / "train.py")
    train = loaded_from_src(ROOT / "stages" / "train.py")
    assert {"src/regression/__init__.py", "src/regression/params.py", "src/tracking/store.py"} <= train
    server = loaded_from_src(SRC / "team_server" / "server.py")
    assert {"src/team_server/postgres.py", "src/team_server/tls.py", "src/tracking/store.py"} <= server


@pytest.mark.parametrize("script", sorted(path.name for path in (ROOT / "stages").glob("*.py")))
def test_what_a_stage_loads_from_src_is_its_dep_or_only_records(script):
    """Nothing a stage's outputs are made from lives outside its deps: what its script loads from
    src/ is the lesson package (its dep) or MLflow's code (which only records the run)."""
    outside = sorted(f for f in loaded_from_src(ROOT / "stages" / script)
                     if not (under(f, PACKAGE) or under(f, RECORDING)))
    assert not outside, f"stages/{script} loads {outside}, which no stage lists as a dep"


@pytest.mark.parametrize("module", sorted(str(path.relative_to(ROOT))
                                          for path in (ROOT / PACKAGE).rglob("*.py")
                                          if "__pycache__" not in path.parts))
def test_the_lesson_package_imports_no_mlflow(module):
    """src/regression, the stages' one code dep, holds everything their outputs are made from: it
    imports neither MLflow nor the code around it, which no stage depends on."""
    forbidden = {"tracking", "team_server", "mlflow"}
    found = sorted(name for name in imported_names(ROOT / module) if name.split(".")[0] in forbidden)
    assert not found, f"{module} imports {found}"


def test_dvc_yaml_fits_two_screens():
    lines = (ROOT / "dvc.yaml").read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"dvc.yaml has {len(lines)} lines, more than {MAX_LINES}"


def test_make_dag_prints_every_stage_within_120_columns():
    """`dvc dag` draws a line across every stage `params` feeds; `make dag` prints Mermaid instead."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^dag:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert recipe and recipe.group(1).strip() == "dvc dag --md", "the Makefile's `dag` is not `dvc dag --md`"
    dvc = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(dvc), "dag", "--md"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    wide = [line for line in result.stdout.splitlines() if len(line.expandtabs()) > WIDTH]
    assert not wide, f"{len(wide)} lines wider than {WIDTH} columns: {wide[:3]}"
    missing = [name for name in STAGES if f'["{name}"]' not in result.stdout]
    assert not missing, f"stages missing from the chart: {missing}\n{result.stdout}"


def all_outputs(stage: dict) -> list[str]:
    return paths(stage.get("outs")) + paths(stage.get("metrics")) + paths(stage.get("plots"))


@pytest.mark.parametrize("name", STAGES)
def test_stage_data_deps_are_outputs_of_another_stage(name):
    """Each data input is another stage's output, or a file in an output folder of one."""
    outs = {path for other in STAGES.values() for path in all_outputs(other)}
    for dep in paths(STAGES[name].get("deps")):
        if not dep.startswith(("src/", "stages/")) and dep != "params.yaml":
            assert any(under(dep, out) for out in outs), f"{name}: dep {dep} is no stage's output"


@pytest.mark.parametrize("name", STAGES)
def test_every_other_stage_waits_for_the_params_check(name):
    """Each stage depends on an output of the `params` stage, so that a section no stage reads stops
    `dvc repro` before any work."""
    if name != "params":
        outs = paths(STAGES["params"].get("outs"))
        assert any(dep.startswith(f"{out}/") for dep in paths(STAGES[name].get("deps")) for out in outs), name


@pytest.mark.parametrize("name", STAGES)
def test_every_path_a_stage_command_names_is_a_dep_or_an_out(name):
    """dvc.yaml passes each stage its paths, so a path in a command DVC does not track is a bug."""
    stage = STAGES[name]
    tracked = set(paths(stage.get("deps"))) | set(all_outputs(stage))
    named = set(re.findall(r"\b(?:data|models|metrics)/[\w./-]+", stage["cmd"]))
    assert named, f"{name}: its command names no data, models or metrics path"
    assert named <= tracked, f"{name}: {sorted(named - tracked)} are in its command but not in deps/outs"


@pytest.mark.parametrize("name", STAGES)
def test_stage_params_exist_in_params_yaml(name):
    for entry in STAGES[name].get("params") or []:
        # Either `section.key` in params.yaml or {other_file.yaml: [keys]}.
        keys = [entry] if isinstance(entry, str) else []
        if isinstance(entry, dict):
            for file, file_keys in entry.items():
                assert Path(file).name == "params.yaml", f"{name}: params from {file}"
                keys += file_keys or []
        for key in keys:
            try:
                lookup(PARAMS, key)
            except (KeyError, TypeError):
                pytest.fail(f"{name}: params entry {key!r} is not in params.yaml")


def leaves(tree, prefix: str = "") -> dict:
    """{'a.b': value} for every scalar of params.yaml (lists are left out: `-S` sets a scalar)."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in leaves(value, f"{prefix}{key}.").items()}
    return {} if isinstance(tree, list) else {prefix.rstrip("."): tree}


def another(value):
    """A different value of the same type, as `-S key=value` would write it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.5
    if re.fullmatch(r"[0-9a-f]{64}", value):
        return value[::-1]  # another sha256, as long
    return f"{value}x"


@pytest.mark.parametrize("key", leaves(PARAMS))
def test_dvc_exp_run_set_param_changes_one_line_of_params_yaml(tmp_path, key):
    """`dvc exp run -S key=value` writes params.yaml through `apply_overrides` (Hydra's override
    grammar, then DVC's YAML writer): for any key, the diff must be that key's line alone."""
    from dvc.utils.hydra import apply_overrides

    from regression.params import parse_yaml

    path = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    path.write_text(original)
    value = another(lookup(PARAMS, key))
    apply_overrides(str(path), [f"{key}={value}"])
    before, after = original.splitlines(), path.read_text().splitlines()
    assert len(before) == len(after), "\n".join(after)
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    *sections, last = key.split(".")
    assert len(changed) == 1 and changed[0][1].lstrip().startswith(f"{last}: "), changed
    expected = parse_yaml(original)  # and the file says what -S set, nothing else
    lookup(expected, ".".join(sections))[last] = value
    assert parse_yaml(path.read_text()) == expected
