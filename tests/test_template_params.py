"""An entry dvc.yaml's templates cannot read is refused in one line before DVC reads dvc.yaml."""

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from dvc_tools.template_params import main, problems

ROOT = Path(__file__).resolve().parent.parent
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def without_dataset(*entries: str) -> dict:
    raw = copy.deepcopy(PARAMS)
    for dotted in entries:
        section, name = dotted.split(".")
        del raw[section][name]["dataset"]
    return raw


def test_the_committed_params_pass():
    assert problems(PARAMS) == []


def test_an_entry_without_dataset_is_one_line_naming_it_and_the_datasets():
    assert problems(without_dataset("train.mlp", "sweep.softmax_nn")) == [
        "  train.mlp.dataset: missing key; name what it learns from (fashion-mnist, synthetic)",
        "  sweep.softmax_nn.dataset: missing key; name what it learns from (fashion-mnist, synthetic)"]


def test_a_section_or_entry_that_is_not_a_table_is_one_line():
    raw = copy.deepcopy(PARAMS) | {"datasets": None}
    raw["train"]["mlp"] = ["mlp"]
    assert problems(raw) == ["  datasets = None: not a table; dvc.yaml makes a stage per entry of it",
                             "  train.mlp = ['mlp']: not a table of params; give it its keys"]


def test_the_only_item_key_dvc_yaml_reads_is_the_one_checked():
    """A new `${item.<key>}` in dvc.yaml must be checked here too, or DVC says it first."""
    assert set(re.findall(r"\$\{item\.(\w+)\}", (ROOT / "dvc.yaml").read_text())) == {"dataset"}


def test_dvc_itself_cannot_read_dvc_yaml_without_it_and_the_check_says_so_first(tmp_path, capsys):
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(without_dataset("train.mlp")))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    dvc = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=tmp_path, capture_output=True, text=True)
    assert dvc.returncode != 0 and "item.dataset" in dvc.stderr
    assert main([str(tmp_path / "params.yaml")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / 'params.yaml'}: invalid params (DVC cannot read dvc.yaml without them):",
        "  train.mlp.dataset: missing key; name what it learns from (fashion-mnist, synthetic)"]


def test_make_run_and_make_sweep_check_before_dvc_repro():
    for target in ("run", "sweep"):
        commands = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True,
                                  text=True, check=True).stdout
        check, repro = commands.find("dvc_tools.template_params"), commands.find("dvc repro")
        assert 0 <= check < repro, f"make {target}:\n{commands}"
