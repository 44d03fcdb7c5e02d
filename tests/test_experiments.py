"""`make exps`: DVC's experiments table cut to what a person reads, within 120 columns."""

import pytest

from dvc_tools.experiments import rows_of, short_names, table


def show_json(experiments: dict[str, dict]) -> list[dict]:
    """`dvc exp show --json` as DVC 3 prints it: the workspace, then the commit with its experiments."""
    def data(train: dict, accuracy: float) -> dict:
        params = {"datasets": {"fashion-mnist": {"seed": 0, "files": {"a": {"sha256": "f" * 64}}}}, "train": train}
        metrics = {"metrics/softmax_nn.json": {"data": {"test_accuracy": accuracy, "test_loss": 0.5}},
                   "metrics/linear.json": {"data": {"test_loss": 1.0259e-4, "w_0": 2.0}}}
        return {"params": {"params.yaml": {"data": params}}, "metrics": metrics, "deps": {"x": {"hash": "0" * 32}}}

    base = {"softmax_nn": {"lr": 0.05, "epochs": 10}, "linear": {"lr": 0.05, "epochs": 10}}
    return [{"rev": "workspace", "name": None, "data": data(base, 0.8331), "experiments": None},
            {"rev": "a" * 40, "name": "main", "data": data(base, 0.8331), "experiments": [
                {"name": name, "revs": [{"rev": "b" * 40, "name": name,
                                         "data": data({**base, "softmax_nn": base["softmax_nn"] | change}, acc)}]}
                for name, (change, acc) in experiments.items()]}]


def test_the_table_shows_names_varying_params_and_headline_metrics_only():
    lines = table(rows_of(show_json({"nn-lr-0.1": ({"lr": 0.1}, 0.8409), "nn-30": ({"epochs": 30}, 0.84)})))
    # the metric of the model whose params changed first, then the others, then the params that vary
    assert lines[0].split() == ["experiment", "softmax_nn", "test_acc", "linear", "test_loss", "softmax_nn.epochs",
                                "softmax_nn.lr"]
    assert [line.split() for line in lines[1:]] == [["main", "0.8331", "0.000103", "10", "0.05"],
                                                    ["nn-lr-0.1", "0.8409", "0.000103", "10", "0.1"],
                                                    ["nn-30", "0.8400", "0.000103", "30", "0.05"]]
    assert not any("sha256" in line or "validation_size" in line for line in lines)  # the same in every row


def test_the_table_fits_its_width_and_names_what_it_left_out():
    many = {f"exp-{i}": ({f"param_with_a_long_name_{j}": i * j for j in range(12)}, 0.8) for i in range(3)}
    lines = table(rows_of(show_json(many)), width=120)
    assert max(map(len, lines)) <= 120
    [start] = [i for i, line in enumerate(lines) if line.startswith("(not shown, for width: ")]
    below = " ".join(lines[start:])  # wrapped at the width, never cut
    assert below.endswith(")") and all(f"param_with_a_long_name_{j}" in below for j in range(2, 10)), below
    assert "linear test_loss" in below and "softmax_nn test_acc" in lines[0]  # the changed model's, always


def test_what_changed_is_shown_first_and_what_only_some_commits_have_is_no_change():
    """After `-S train.softmax_scratch.batch_size=256` beside other models, in a narrow terminal: the
    changed param and that model's metric, not another model's; with -A, a param an older commit
    does not have (the data files' sizes, say) is no column."""
    show = show_json({"scratch-256": ({}, 0.8331)})
    older = show_json({})[1] | {"rev": "c" * 40, "name": "older"}
    del older["data"]["params"]["params.yaml"]["data"]["datasets"]
    experiment = show[1]["experiments"][0]["revs"][0]["data"]
    for data, batch_size in ((show[1]["data"], 100), (experiment, 256), (older["data"], 100)):
        data["params"]["params.yaml"]["data"]["train"]["softmax_scratch"] = {"batch_size": batch_size}
        for model in ("mlp", "softmax_scratch", "sweep/mlp", "sweep/softmax_nn"):
            data["metrics"][f"metrics/{model}.json"] = {"data": {"test_accuracy": 0.8331}}
    experiment["metrics"]["metrics/softmax_scratch.json"] = {"data": {"test_accuracy": 0.8201}}
    lines = table(rows_of(show + [older]), width=60)
    assert lines[0].split()[:3] == ["experiment", "softmax_scratch", "test_acc"], "\n".join(lines)
    assert lines[0].split()[3] == "batch_size" and "sha256" not in "\n".join(lines), "\n".join(lines)
    assert [line.split()[:3] for line in lines[1:4]] == [["main", "0.8331", "100"], ["scratch-256", "0.8201", "256"],
                                                        ["older", "0.8331", "100"]], "\n".join(lines)


def test_with_older_commits_the_header_is_never_cut_and_their_models_are_named_below():
    """`-A`: an older commit whose metrics files had other names adds a column per old model."""
    show = show_json({"nn-lr-0.1": ({"lr": 0.1}, 0.8409)})
    old = show_json({})[1] | {"rev": "c" * 40, "name": "old-commit"}
    old["data"]["metrics"] = {f"metrics/an_older_model_with_a_long_name_{i}.json":
                              {"data": {"test_accuracy": 0.8}} for i in range(6)}
    lines = table(rows_of(show + [old]), width=120)
    assert max(map(len, lines)) <= 120, "\n".join(lines)
    header = lines[0].split()
    # the newest commit's models come first and whole; the older ones that do not fit are named below
    assert header[:5] == ["experiment", "softmax_nn", "test_acc", "linear", "test_loss"], lines[0]
    known = ("experiment", "linear", "test_acc", "test_loss")
    older = ("an_older_model_with_a_long_name_", "softmax_nn")
    assert all(word in known or word.startswith(older) for word in header), lines[0]
    below = " ".join(lines[lines.index(next(line for line in lines if line.startswith("(not shown"))):])
    assert "an_older_model_with_a_long_name_5 test_acc" in below, below


def test_short_names_are_unique_endings():
    assert short_names(["train.linear.lr", "train.softmax_nn.lr", "generate.seed"]) == {
        "train.linear.lr": "linear.lr", "train.softmax_nn.lr": "softmax_nn.lr", "generate.seed": "seed"}


@pytest.mark.slow
def test_make_exps_shows_a_real_experiment(project_copy):
    from projects import environment, run

    run(project_copy, "dvc", "exp", "run", "-n", "nn-lr-0.1", "-S", "train.softmax_nn.lr=0.1")
    result = run(project_copy, "python", "-m", "dvc_tools.experiments", env=environment(PYTHONPATH="src"))
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 120, result.stdout
    assert "softmax_nn.lr" in lines[0].split() and "softmax_nn" in lines[0]
    [row] = [line.split() for line in lines if line.startswith("nn-lr-0.1 ")]
    assert row[-1] == "0.1"


@pytest.mark.slow
def test_dvc_metrics_show_fits_120_columns_with_every_value_whole(reproduced):
    """On a 120-column terminal: a column per headline metric, none cut or dropped."""
    import json

    from projects import environment, run

    path = reproduced[0]
    result = run(path, "dvc", "metrics", "show", env=environment(COLUMNS="120"))
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 120 and "…" not in result.stdout, result.stdout
    files = {str(p.relative_to(path)): json.loads(p.read_text())
             for p in sorted(path.glob("metrics/*.json")) + sorted(path.glob("metrics/sweep/*.json"))}
    assert set(lines[0].split()[1:]) == {key for metrics in files.values() for key in metrics}, result.stdout
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(files), result.stdout
