"""The MLflow UI: the lesson's saved view, the links to it, and the UI on real runs in a browser.

The end-to-end test takes the store of the shared sweep (four queued experiments of softmax_nn,
each with its own learning rate, and two of linear: tests/projects.py `swept`), serves it with
`mlflow ui`, and opens the Fashion-MNIST experiment's run list in the lesson's view, its chart
view and the compare view of three runs, and the synthetic data's chart view, in headless
Chromium (tests/browser.py). Screenshots land in tests/output/ui/.
"""

import json
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from mlflow import MlflowClient

from browser import Browser
from projects import (
    BIN,
    LINEAR_LEARNING_RATES,
    PROJECT,
    SWEEP_LEARNING_RATES,
    environment,
    free_port,
    runs_by_model,
    stop,
    store_uri,
    wait_for_http,
)
from tracking.store import VIEW_TAG, experiment_tags, lesson_view, open_experiment
from tracking.ui import compare_url, run_list_url

OUTPUT = Path(__file__).with_name("output") / "ui"
FASHION, SYNTHETIC = "fashion-mnist", "synthetic"  # the experiments
SWEEPS = f"{FASHION}/sweeps"
PAGE_SECONDS = 60  # for a page to show its data; it takes 2-5 s
LR, TEST_ACCURACY, RUN_NAME = "params.`lr`", "metrics.`test_accuracy`", "attributes.`Run Name`"
VIEW_PICKER = '[data-component-id="mlflow.experiment_page.saved_views.trigger"]'
# True when the MLflow Assistant panel (which a first visit opens beside the page) is closed;
# if it is open, closes it and is false, so the page is looked at again once it has its full width.
ASSISTANT_CLOSED = """(button => button ? (button.click(), false) : true)(
  document.querySelector('[data-component-id="mlflow.assistant.chat_panel.close"]'))"""
# The run list's rows, top to bottom: {column id: text} (a cell holding a link: the link's text).
RUN_LIST_ROWS = """(() => {
  const rows = {};
  for (const cell of document.querySelectorAll('.ag-row [col-id]')) {
    const index = Number(cell.closest('.ag-row').getAttribute('row-index'));
    (rows[index] ??= {})[cell.getAttribute('col-id')] = (cell.querySelector('a') || cell).innerText.trim();
  }
  return Object.keys(rows).sort((a, b) => a - b).map(index => rows[index]);
})()"""
RUN_LIST_COLUMNS = "[...document.querySelectorAll('.ag-header-cell')].map(c => c.getAttribute('col-id'))"
# A row of the compare view's tables ("Run Name:", "lr", ...): the texts of its cells, or null.
COMPARE_ROW = """(name => {
  for (const row of document.querySelectorAll('tr')) {
    const head = row.querySelector('th');
    if (head?.innerText.trim() === name) return [...row.querySelectorAll('td')].map(c => c.innerText.trim());
  }
  return null;
})"""
COMPARED_METRICS = "[...document.querySelectorAll('a[title=\"Plot chart\"]')].map(a => a.innerText.trim())"
PLOT_DRAWN = "document.querySelector('.js-plotly-plot .parcoords')"
# The chart view's charts: the metric each card is titled with, and how many plots are drawn.
CHART_TITLES = """[...document.querySelectorAll('[data-testid="experiment-view-compare-runs-card"]')]
  .map(card => card.innerText.split('\\n')[0].trim())"""
CHARTS_DRAWN = "document.querySelectorAll('.js-plotly-plot').length"
# The chart view's charts: {metric: {range: the x axis's [from, to], series: {run name: its steps},
# cut: whether the title is cut short}}.
CHART_SERIES = """Object.fromEntries(
  [...document.querySelectorAll('[data-testid="experiment-view-compare-runs-card"]')].map(card => {
    const title = card.innerText.split('\\n')[0].trim(), plot = card.querySelector('.js-plotly-plot');
    const label = [...card.querySelectorAll('*')]
      .find(e => !e.children.length && e.textContent.trim() === title);
    const traces = (plot?.data || []).map(trace => [trace.name, Array.from(trace.x || [])]);
    return [title, {range: plot?._fullLayout?.xaxis?.range, series: Object.fromEntries(traces),
                    cut: !label || label.scrollWidth > label.clientWidth}];
  }))"""
# The chart view's charts: {metric: the names of the runs its legend lists, as "<run name> (<metric>)"}.
CHART_RUNS = """Object.fromEntries(
  [...document.querySelectorAll('[data-testid="experiment-view-compare-runs-card"]')].map(card => {
    const lines = card.innerText.split('\\n').map(line => line.trim()), title = lines[0];
    const legend = lines.filter(line => line.endsWith(` (${title})`));
    return [title, legend.map(line => line.slice(0, -title.length - 3))];
  }))"""


# The saved view and the links


def view_name(classifies: bool = True) -> str:
    return json.loads(lesson_view(classifies)[VIEW_TAG])["name"]


def view_state(tag: str) -> dict:
    """The UI's state inside a saved view's tag: {selectedColumns, orderByKey, orderByAsc, ...}."""
    return json.loads(json.loads(tag)["state"])


def column(name: str) -> tuple[str, str]:
    """('params', 'lr') for the UI's column id params.`lr`."""
    kind, _, key = name.partition(".")
    return kind, key.strip("`")


@pytest.mark.slow
def test_every_store_gets_the_same_saved_views(tmp_path):
    """Two stores set up by two processes, at two moments, hold the same views, byte for byte:
    the classifiers' in the experiment of Fashion-MNIST, the regressor's in that of the synthetic data."""
    views = []
    for name in ("a", "b"):
        uri = f"sqlite:///{tmp_path / name / 'mlflow.db'}"
        set_up = ("from tracking.store import open_experiments; "
                  "open_experiments(['synthetic', 'fashion-mnist'])")
        subprocess.run([str(BIN / "python"), "-c", set_up],
                       env=environment(PYTHONPATH=str(PROJECT / "src"), MLFLOW_TRACKING_URI=uri), check=True)
        views.append({e.name: e.tags[VIEW_TAG] for e in MlflowClient(uri).search_experiments()
                      if VIEW_TAG in e.tags})
    assert views[0] == views[1]
    assert {name: json.loads(tag)["name"] for name, tag in views[0].items()} == {
        FASHION: view_name(classifies=True), SYNTHETIC: view_name(classifies=False)}


def test_the_ui_lists_the_datasets_experiments_by_short_names_and_no_empty_default(tmp_path, monkeypatch):
    """The UI's list shows some 17 characters of a name, so the names are the datasets' own; a new
    local store has no empty "Default" beside them; a store from before keeps its runs, renamed."""
    new = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new)
    open_experiment("fashion-mnist/sweeps")
    open_experiment(SYNTHETIC)
    client = MlflowClient(new)
    assert sorted(e.name for e in client.search_experiments()) == ["fashion-mnist/sweeps", SYNTHETIC]
    assert max(len(e.name) for e in client.search_experiments()) <= 20

    older = f"sqlite:///{tmp_path / 'older' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", older)
    client = MlflowClient(older)
    kept = client.create_run(client.create_experiment(f"regression-lesson/{SYNTHETIC}")).info.run_id
    client.create_run("0")  # a store whose Default holds a run keeps it
    experiment = open_experiment(SYNTHETIC)
    assert client.get_run(kept).info.experiment_id == experiment
    assert {e.name for e in client.search_experiments()} == {SYNTHETIC, "Default"}


def test_one_experiment_for_every_dataset_when_mlflow_experiment_name_is_set(tmp_path, monkeypatch):
    """MLFLOW_EXPERIMENT_NAME, as in MLflow, names the one experiment every run goes to."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    assert open_experiment("synthetic") == open_experiment("fashion-mnist")
    [experiment] = [e for e in MlflowClient(uri).search_experiments() if e.name != "Default"]
    assert experiment.name == "mine" and json.loads(experiment.tags[VIEW_TAG])["name"] == view_name()


def test_run_list_link_names_the_view_the_store_holds(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    experiment = open_experiment("fashion-mnist")
    page, _, query = run_list_url("http://127.0.0.1:5000/", experiment).partition("?")
    assert page == f"http://127.0.0.1:5000/#/experiments/{experiment}/runs"
    [key] = parse_qs(query)["viewStateShareKey"]
    assert f"mlflow.sharedViewState.{key}" in MlflowClient(uri).get_experiment(experiment).tags


def test_compare_link_names_the_runs_and_the_experiment():
    page, _, query = compare_url("http://127.0.0.1:5000", "3", ["a1", "b2"]).partition("?")
    assert page == "http://127.0.0.1:5000/#/compare-runs"
    fields = parse_qs(query)
    assert json.loads(fields["runs"][0]) == ["a1", "b2"] and json.loads(fields["experiments"][0]) == ["3"]


def test_opening_the_experiment_saves_the_view_once_and_keeps_the_users(tmp_path, monkeypatch):
    """A view changed in the UI ("Override saved view") stays; a deleted one comes back."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = open_experiment("fashion-mnist")
    saved = experiment_tags("fashion-mnist")[VIEW_TAG]
    assert client.get_experiment(experiment).tags[VIEW_TAG] == saved
    client.set_experiment_tag(experiment, VIEW_TAG, "the user's own")
    assert open_experiment("fashion-mnist") == experiment
    assert client.get_experiment(experiment).tags[VIEW_TAG] == "the user's own"
    client.delete_experiment_tag(experiment, VIEW_TAG)
    open_experiment("fashion-mnist")
    assert client.get_experiment(experiment).tags[VIEW_TAG] == saved


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM to make ui", "Ctrl-C in its terminal"])
def test_make_ui_stops_the_ui_it_started_and_leaves_nothing_serving(tmp_path, how):
    """Stopped by a signal to it (a service manager, `kill`) or by Ctrl-C (SIGINT to the whole
    foreground group), `make ui` stops the UI it started, quietly: nothing answers afterwards."""
    shutil.copy(PROJECT / "params.yaml", tmp_path / "params.yaml")
    port = free_port()
    ui = subprocess.Popen([str(BIN / "python"), "-m", "tracking.ui", "--port", str(port)],
                          cwd=tmp_path, env=environment(PYTHONPATH=str(PROJECT / "src")), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", ui)
        if how.startswith("SIGTERM"):
            ui.send_signal(signal.SIGTERM)
        else:
            os.killpg(ui.pid, signal.SIGINT)
        output, _ = ui.communicate(timeout=60)
        with pytest.raises(OSError):  # before `stop` below ends whatever is left in its group
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        stop(ui)
    assert ui.returncode != 0 and "Traceback" not in output, output


# The UI in a browser, on runs the pipeline made


@pytest.fixture
def lesson_runs(swept):
    """The swept project and its runs of softmax_nn: (path, {lr: run})."""
    path, _ = swept
    runs = runs_by_model(MlflowClient(store_uri(path)), FASHION)["softmax_nn"]
    return path, {r.data.params["lr"]: r for r in runs}


@pytest.mark.slow
def test_each_experiment_holds_one_datasets_runs(swept):
    """The linear model's MSE and the softmax models' cross-entropy never share a chart: the
    swept runs of softmax_nn are all in Fashion-MNIST's experiment, the linear ones in the
    synthetic data's, and nothing else is in either."""
    path, _ = swept
    client = MlflowClient(store_uri(path))
    in_experiment = {name: {model: [r.data.params["lr"] for r in runs]
                            for model, runs in runs_by_model(client, name).items()}
                     for name in (FASHION, SYNTHETIC)}
    assert {name: {model: sorted(lrs) for model, lrs in models.items()}
            for name, models in in_experiment.items()} == {
        FASHION: {"softmax_nn": sorted(SWEEP_LEARNING_RATES)}, SYNTHETIC: {"linear": sorted(LINEAR_LEARNING_RATES)}}


@pytest.mark.slow
@pytest.mark.parametrize("name, best", [(FASHION, ("test_accuracy", max)), (SYNTHETIC, ("test_loss", min))])
def test_saved_view_shows_what_the_runs_record_best_first(swept, name, best):
    """Every column of each experiment's view is a param or metric each of its runs has (the
    softmax runs with a validation split held out; the linear run, no accuracy), and the view's
    sort puts the best run first: best test accuracy, or for the linear model lowest test loss."""
    path, _ = swept
    client = MlflowClient(store_uri(path))
    experiment = client.get_experiment_by_name(name)
    runs = [r for group in runs_by_model(client, name).values() for r in group]
    state = view_state(experiment.tags[VIEW_TAG])
    for r in runs:
        recorded = {"params": r.data.params, "metrics": r.data.metrics}
        missing = [name for name in state["selectedColumns"]
                   if column(name)[1] not in recorded[column(name)[0]]]
        assert not missing, f"the view shows {missing}, which run {r.info.run_name} does not have"
    kind, key = column(state["orderByKey"])
    assert kind == "metrics" and state["orderByKey"] in state["selectedColumns"]
    metric, pick = best
    # The tiny data ties the softmax runs' accuracies: the view's sort itself is what is checked.
    assert (key, state["orderByAsc"]) == (metric, pick is min)
    if name == SYNTHETIC:  # the two linear runs differ
        assert len({r.data.metrics[metric] for r in runs}) == len(runs) == 2
    ordered = sorted(runs, key=lambda r: r.data.metrics[key], reverse=not state["orderByAsc"])
    assert ordered[0].data.metrics[metric] == pick(r.data.metrics[metric] for r in runs)


@pytest.fixture
def mlflow_ui(lesson_runs):
    """`mlflow ui` on the project copy's store; yields its URL."""
    path, _ = lesson_runs
    yield from serve_ui(path)


@pytest.fixture
def pipeline_ui(reproduced):
    """`mlflow ui` on the reproduced project's store (a run of each train stage, and the sweep
    with its trials): (project, URL)."""
    path, _, _ = reproduced
    for url in serve_ui(path):
        yield path, url


def serve_ui(path: Path):
    """`mlflow ui` on the store of the project at `path`, until the generator is closed; yields its URL."""
    port = free_port()
    # One worker and no job runner (GenAI's background tasks): up in seconds, not half a minute.
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "ui", "--backend-store-uri", store_uri(path), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        env=environment(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", server)
        yield url
    finally:
        stop(server)


def load(browser: Browser, url: str, ready: str, screenshot: str, height: int = 1000):
    """Open `url`, wait until the JavaScript condition `ready` holds with the Assistant panel
    closed, and save a screenshot; the page (or a failure showing what it had)."""
    page = browser.open(url, height=height)
    loaded = page.wait_for(f"{ASSISTANT_CLOSED} && ({ready})", PAGE_SECONDS)
    page.screenshot(OUTPUT / screenshot)
    if not loaded:
        pytest.fail(f"{url} did not show its data in {PAGE_SECONDS} s (screenshot: {OUTPUT / screenshot}); "
                    f"it showed:\n{page.text()[:3000]}")
    return page


@pytest.mark.slow
def test_ui_shows_the_runs_in_the_lesson_view_and_compares_them(chromium, lesson_runs, mlflow_ui):
    path, runs = lesson_runs
    experiment = MlflowClient(store_uri(path)).get_experiment_by_name(FASHION)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    names = {lr: r.info.run_name for lr, r in runs.items()}
    assert set(names) == set(SWEEP_LEARNING_RATES)
    assert all(name.startswith(f"softmax_nn lr={lr} ") for lr, name in names.items())
    assert len(set(names.values())) == len(names)  # four names, each its own

    shown = view_state(experiment.tags[VIEW_TAG])["selectedColumns"]  # the view the store holds

    with Browser(chromium) as browser:
        filled_rows = f"{RUN_LIST_ROWS}.filter(row => {json.dumps(shown)}.every(key => row[key]))"
        run_list = load(browser, run_list_url(mlflow_ui, experiment.experiment_id),
                        f"{filled_rows}.length === {len(runs)}", "run-list.png")
        hash_path, _, query = run_list.evaluate("location.hash").partition("?")
        assert hash_path == f"#/experiments/{experiment.experiment_id}/runs"  # not GenAI's overview or traces
        heading = run_list.evaluate("document.querySelector('h2').innerText")
        assert heading == "Runs"  # in GenAI's workflow: "Training runs"
        assert run_list.evaluate(f"document.querySelector('{VIEW_PICKER}').innerText") == view_name()
        order = parse_qs(query)
        assert (order["orderByKey"], order["orderByAsc"]) == ([TEST_ACCURACY], ["false"])
        columns = run_list.evaluate(RUN_LIST_COLUMNS)
        assert set(shown) <= set(columns) and columns.index(LR) < columns.index(TEST_ACCURACY)
        rows = run_list.evaluate(RUN_LIST_ROWS)
        assert {row[RUN_NAME]: row[LR] for row in rows} == {name: lr for lr, name in names.items()}
        accuracies = [float(row[TEST_ACCURACY]) for row in rows]
        assert accuracies == sorted(accuracies, reverse=True), "not sorted by test accuracy, best first"

        charts = load(browser, run_list_url(mlflow_ui, experiment.experiment_id, charts=True),
                      f"{CHART_TITLES}.includes('test_accuracy') && {CHARTS_DRAWN} >= 3", "run-charts.png",
                      height=1400)
        titles = set(charts.evaluate(CHART_TITLES))
        assert {"test_accuracy", "test_loss", "train_loss", "train_accuracy"} <= titles, titles
        # Each chart of Fashion-MNIST's experiment has a line per softmax run, and none of the linear
        # model's: its squared errors (up to 15) would flatten the cross-entropies (about 0.5).
        legends = {title: sorted(shown) for title, shown in charts.evaluate(CHART_RUNS).items()}
        assert legends == dict.fromkeys(titles, sorted(names.values())), legends
        linear = runs_by_model(MlflowClient(store_uri(path)), SYNTHETIC)["linear"]
        synthetic = MlflowClient(store_uri(path)).get_experiment_by_name(SYNTHETIC).experiment_id
        charts = load(browser, run_list_url(mlflow_ui, synthetic, charts=True),
                      f"{CHART_TITLES}.includes('test_loss') && {CHARTS_DRAWN} >= 2",
                      "run-charts-synthetic.png")
        linear_names = [r.info.run_name for r in linear]
        legends = {title: sorted(shown) for title, shown in charts.evaluate(CHART_RUNS).items()}
        assert legends == dict.fromkeys(("test_loss", "train_loss"), sorted(linear_names))

        compared = SWEEP_LEARNING_RATES[:3]
        ids = [runs[lr].info.run_id for lr in compared]
        compare = load(browser, compare_url(mlflow_ui, experiment.experiment_id, ids),
                       f"{COMPARE_ROW}('lr')?.length === 3 && {PLOT_DRAWN}", "compare-runs.png", height=2000)
        assert "Comparing 3 Runs" in compare.text()
        assert compare.evaluate(f"{COMPARE_ROW}('Run Name:')") == [names[lr] for lr in compared]
        assert compare.evaluate(f"{COMPARE_ROW}('lr')") == list(compared)
        assert {"test_accuracy", "test_loss", "train_loss"} <= set(compare.evaluate(COMPARED_METRICS))


def top_level_runs(client: MlflowClient, name: str) -> list:
    """The runs of an experiment that are not nested under another (a sweep's trials are)."""
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


@pytest.mark.slow
def test_ui_compares_like_with_like_and_nests_each_sweeps_trials(chromium, pipeline_ui):
    """In each experiment's chart view (the link `make ui` prints), every chart spans the epochs
    of that experiment's runs and no more: the lesson's runs share an axis with the lesson's
    runs, a sweep's trials with its trials (no 60 epochs squeezing 10 into a sixth); each run is
    a line over its own epochs, the sweep's run too (its test accuracy is not a lone point at
    step 0); no title is cut. In the sweeps' run list the sweep's row fills every column of the
    view, the trials nested under it."""
    path, url = pipeline_ui
    client = MlflowClient(store_uri(path))
    with Browser(chromium) as browser:
        for name in (FASHION, SYNTHETIC, SWEEPS):
            experiment = client.get_experiment_by_name(name)
            runs = top_level_runs(client, name)
            steps = {r.info.run_name: list(range(1, int(r.data.params["epochs"]) + 1)) for r in runs}
            metrics = set().union(*(r.data.metrics for r in runs))
            screenshot = f"charts-{name.replace('/', '-')}.png"
            page = load(browser, run_list_url(url, experiment.experiment_id, charts=True),
                        f"{CHARTS_DRAWN} >= {len(metrics)}", screenshot, height=600 + 300 * len(metrics))
            charts = page.evaluate(CHART_SERIES)
            assert set(charts) == metrics, (name, set(charts), metrics)
            last = max(map(len, steps.values()))
            for metric, chart in charts.items():
                start, end = chart["range"]
                assert 0 < start < 1 and last < end < last + 1, \
                    f"{name}, {metric}: x from {start} to {end}, its runs' epochs 1 to {last}"
                assert chart["series"] == {run: steps[run] for run in steps
                                           if any(r.info.run_name == run and metric in r.data.metrics
                                                  for r in runs)}, (name, metric, chart["series"])
                assert not chart["cut"], f"{name}: the title {metric} is cut short"

        experiment = client.get_experiment_by_name(SWEEPS)
        shown = view_state(experiment.tags[VIEW_TAG])["selectedColumns"]
        sweeps = sorted(top_level_runs(client, SWEEPS), key=lambda r: r.info.start_time, reverse=True)
        filled = (f"{RUN_LIST_ROWS}.filter(row => "
                  f"{json.dumps(shown)}.every(key => row[key] && row[key] !== '-'))")
        run_list = load(browser, run_list_url(url, experiment.experiment_id), f"{filled}.length === {len(sweeps)}",
                        "run-list-sweeps.png")
        rows = run_list.evaluate(RUN_LIST_ROWS)
        # each model's sweep, newest first, its trials nested, not listed
        assert [row[RUN_NAME] for row in rows] == [sweep.info.run_name for sweep in sweeps], rows
        for row, sweep in zip(rows, sweeps):
            assert {key: row[key] for key in shown if column(key)[0] == "params"} == {
                key: sweep.data.params[column(key)[1]] for key in shown if column(key)[0] == "params"}
            chosen = sweep.data.metrics["val_accuracy"]
            assert float(row["metrics.`val_accuracy`"]) == pytest.approx(chosen, abs=1e-4)


def test_make_ui_on_a_taken_port_says_so_and_offers_a_free_one_not_the_servers(tmp_path, monkeypatch, capsys):
    """Before anything starts: the port is taken (another UI, say); the hint names a port free now,
    never 5001, where `make server` listens, nor 5002, where the README serves a model."""
    import socket

    import tracking.ui

    monkeypatch.setattr(tracking.ui, "local_store_uri", lambda: f"sqlite:///{tmp_path / 'mlflow.db'}")
    with socket.socket() as taken, socket.socket() as next_one:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            next_one.bind(("127.0.0.1", port + 1))  # the port after it is taken too, if it can be
        except OSError:
            pass
        assert tracking.ui.main(["--port", str(port)]) == 1
        message = capsys.readouterr().err.strip()
        offered = int(message.rsplit("PORT=", 1)[1].rstrip(")"))
    assert message.startswith(f"error: http://127.0.0.1:{port} is taken ("), message
    assert offered > port + 1 and tracking.ui.port_in_use(offered) is None
    assert not (tmp_path / "mlflow.db").exists()  # nothing started, nothing made
    assert tracking.ui.free_port_after(5000) not in (5001, 5002)  # make server's, the README's models serve
