"""A failed, refused or interrupted stage keeps the last good outputs, in `dvc exp run` and `dvc repro`.

One copy of the reproduced project goes through every kind of failure in turn: a bad value, a
diverging loss, Ctrl-C (SIGINT to the process group, as a terminal sends it), SIGTERM and
`kill -9`. After each, every output is the same bytes as before, git and DVC name only the
changed params.yaml, and `git checkout HEAD params.yaml` makes `dvc status` clean again.
"""

import json
import os
import re
import signal
import subprocess

import pytest

from projects import edit_params, environment, run, stages_run
from regression.stage import KEPT


def outputs(project) -> dict[str, bytes]:
    """Every file under models/ and metrics/ (a leftover temporary file would show too)."""
    return {str(p.relative_to(project)): p.read_bytes() for folder in ("models", "metrics")
            for p in sorted((project / folder).rglob("*")) if p.is_file()}


def start(project, *command: str) -> subprocess.Popen:
    """`command` in its own process group, its output unbuffered (to see when training started)."""
    return subprocess.Popen(command, cwd=project, env=environment(PYTHONUNBUFFERED="1"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def signalled_in_training(process: subprocess.Popen, signum: int) -> str:
    """Send `signum` to the process group once an epoch has been printed; the whole output."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("epoch 1,"):
            os.killpg(process.pid, signum)
            break
    rest, _ = process.communicate(timeout=120)
    return "".join(seen) + rest


def finished(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    return output


# (what, command, params changed, how it ends): each leaves params.yaml changed, as a user would.
FAILURES = [
    ("bad value", ["dvc", "exp", "run", "-S", "train.softmax_nn.lr=-0.5"], "softmax_nn", finished),
    ("divergence", ["dvc", "exp", "run", "-S", "train.linear.lr=5.0"], "linear", finished),
    ("Ctrl-C", ["dvc", "exp", "run", "-S", "train.softmax_nn.epochs=5000"], "softmax_nn",
     lambda p: signalled_in_training(p, signal.SIGINT)),
    ("SIGTERM in dvc repro", ["dvc", "repro"], "softmax_nn",
     lambda p: signalled_in_training(p, signal.SIGTERM)),
    ("kill -9", ["dvc", "exp", "run", "-S", "train.softmax_nn.epochs=5000"], "softmax_nn",
     lambda p: signalled_in_training(p, signal.SIGKILL)),
]


@pytest.mark.slow
def test_every_kind_of_failure_keeps_the_last_good_outputs_and_says_how_to_go_back(project_copy):
    run(project_copy, "git", "add", "-A")  # the results committed, as in the project
    run(project_copy, "git", "commit", "-qm", "results")
    before = outputs(project_copy)
    assert any(name.startswith("models/") for name in before) and "metrics/softmax_nn.json" in before
    for what, command, model, ends in FAILURES:
        if command[:2] == ["dvc", "repro"]:  # the user edits params.yaml, then reproduces
            edit_params(project_copy, lambda p: p["train"]["softmax_nn"].update(epochs=5000))
        process = start(project_copy, *command)
        output = ends(process)

        assert process.returncode != 0, f"{what}: {output}"
        assert outputs(project_copy) == before, f"{what}: outputs changed\n{output}"
        git = run(project_copy, "git", "status", "--porcelain").stdout.splitlines()
        # params.yaml, and dvc.lock where the params stage (which passed) recorded the new params.yaml;
        # `dvc exp run` stages them while it runs, and has no chance to unstage them after kill -9
        assert {line[3:] for line in git} <= {"params.yaml", "dvc.lock"} and " M params.yaml" in git or (
            what == "kill -9" and "M  params.yaml" in git), (what, git, output)
        status = json.loads(run(project_copy, "dvc", "status", "--json").stdout)
        changed = {"changed deps": {"params.yaml": {f"train.{model}": "modified"}}}
        assert status.pop(f"train@{model}") == [changed] and set(status) <= {"params"}, (what, status, output)
        if what != "kill -9":  # nothing can speak after kill -9: the README says the way back
            [back] = [line for line in output.splitlines() if line.startswith(KEPT)]
            assert f"`dvc exp run -S train.{model}." in back and back.endswith("keeps your other edits"), (what, back)

        run(project_copy, "git", "checkout", "HEAD", "params.yaml", "dvc.lock")
        assert json.loads(run(project_copy, "dvc", "status", "--json").stdout) == {}, what
        assert run(project_copy, "git", "status", "--porcelain").stdout == "", what

    # Nothing left behind stops the next experiment.
    result = run(project_copy, "dvc", "exp", "run", "-S", "train.softmax_nn.epochs=2")
    ran = stages_run(result.stdout)
    assert ran <= {"params", "train@softmax_nn"} and "train@softmax_nn" in ran, result.stdout


def test_outputs_are_replaced_all_together_or_not_at_all(tmp_path):
    """If any output cannot be written, none is replaced: the earlier ones stay, no temporary file
    is left, and the error is one line naming the output (a PipelineError, no traceback)."""
    from regression import PipelineError
    from regression.files import write_outputs

    (tmp_path / "model.pt").write_bytes(b"old model")
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "a.csv").write_bytes(b"old a")
    (tmp_path / "blocked").write_bytes(b"a file where a folder would go")
    blocked = tmp_path / "blocked" / "metrics.json"
    kept = f"^{re.escape(str(blocked))}: cannot be written .*; the last good outputs are kept$"
    with pytest.raises(PipelineError, match=kept):
        write_outputs({tmp_path / "model.pt": b"new model", tmp_path / "evaluation": {"a.csv": b"new a"},
                       blocked: b"{}"})
    assert (tmp_path / "model.pt").read_bytes() == b"old model"
    assert [p.name for p in (tmp_path / "evaluation").iterdir()] == ["a.csv"]
    assert (tmp_path / "evaluation" / "a.csv").read_bytes() == b"old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "evaluation", "model.pt"]

    write_outputs({tmp_path / "model.pt": b"new model", tmp_path / "evaluation": {"b.csv": b"new b"}})
    assert (tmp_path / "model.pt").read_bytes() == b"new model"
    assert [p.name for p in (tmp_path / "evaluation").iterdir()] == ["b.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "evaluation", "model.pt"]
