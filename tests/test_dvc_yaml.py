"""A static check that keeps dvc.yaml honest.

DVC re-runs a stage only when one of its listed deps or params changes, so a stage whose
code imports a module missing from its deps silently keeps stale outputs when that module
changes. Here every stage script's `regression.*` imports are followed through src/regression
and compared with the stage's deps, and every params section a stage lists must exist.
"""

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "regression"
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


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


def module_files(name: str) -> set[Path]:
    """The files of src/regression that importing `name` loads: each package's __init__.py on
    the way, and the module's file; nothing for a name that is not a module (`regression.X`)."""
    parts = name.split(".")
    found, folder = set(), PACKAGE
    if parts[0] != "regression":
        return found
    for part in parts[1:]:
        if (folder / part / "__init__.py").is_file():
            folder = folder / part
            found.add(folder / "__init__.py")
        elif (folder / f"{part}.py").is_file():
            found.add(folder / f"{part}.py")
            break
        else:
            break
    return found


def imported_modules(path: Path) -> set[Path]:
    """The src/regression files a file imports directly, e.g. {.../data.py, .../stage.py}."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the package
                base = ".".join(["regression"] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from regression import data` imports a module; `from regression import X` a name.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            found |= module_files(name)
    return found


def code_closure(script: Path) -> set[str]:
    """Every src/regression file the script loads, directly or through other modules."""
    pending = imported_modules(script) | {PACKAGE / "__init__.py"}
    seen = set()
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending |= imported_modules(module)
    return {str(module.relative_to(ROOT)) for module in seen}


def test_dvc_yaml_has_the_expected_stages():
    """The expansion above works (otherwise the checks below would check nothing)."""
    assert {"download", "prepare", "generate", "samples"} <= set(STAGES)
    assert {name for name in STAGES if name.startswith("train@")} == {f"train@{m}" for m in PARAMS["train"]}


def test_import_follower_sees_indirect_imports():
    """Control: samples.py reaches params.py only through stage.py."""
    assert PACKAGE / "params.py" not in imported_modules(ROOT / "stages" / "samples.py")
    assert "src/regression/params.py" in code_closure(ROOT / "stages" / "samples.py")


@pytest.mark.parametrize("name", STAGES)
def test_stage_deps_list_its_script_and_every_module_it_imports(name):
    stage = STAGES[name]
    deps = paths(stage.get("deps"))
    script = stage_script(stage)
    assert script in deps, f"{name}: its script {script} is not in deps"
    needed = code_closure(ROOT / script) - {"src/regression/__init__.py"}
    missing = sorted(needed - set(deps))
    assert not missing, f"{name}: imports {missing} but dvc.yaml does not list them in deps"


@pytest.mark.parametrize("name", STAGES)
def test_stage_code_deps_exist(name):
    """A code dep that no longer exists (a renamed module) is a stale entry."""
    for dep in paths(STAGES[name].get("deps")):
        if dep.startswith(("src/", "stages/")):
            assert (ROOT / dep).is_file(), f"{name}: dep {dep} does not exist"


def all_outputs(stage: dict) -> list[str]:
    return paths(stage.get("outs")) + paths(stage.get("metrics")) + paths(stage.get("plots"))


@pytest.mark.parametrize("name", STAGES)
def test_stage_data_deps_are_outputs_of_another_stage(name):
    """Each data input is another stage's output, or a file in an output folder of one."""
    outs = {path for other in STAGES.values() for path in all_outputs(other)}
    for dep in paths(STAGES[name].get("deps")):
        if not dep.startswith(("src/", "stages/")) and dep != "params.yaml":
            assert any(dep == out or dep.startswith(f"{out}/") for out in outs), f"{name}: dep {dep} is no stage's output"


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
