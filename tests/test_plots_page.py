"""`dvc plots show` offline: its page holds the charting library, and every plot it lists draws.

The end-to-end test renders the reproduced project's plots with the page .dvc/config names
(dvc_tools.plots_page, made by `make`) and opens the result in headless Chromium with the
network switched off. Its screenshot lands in tests/output/plots/.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from browser import Browser
from projects import run
from dvc_tools.plots_page import LIBRARIES

OUTPUT = Path(__file__).with_name("output") / "plots"
# Charts vega-embed has drawn (a canvas or an SVG of marks with a size), and pictures loaded.
CHARTS_DRAWN = ("[...document.querySelectorAll('.vega-embed .marks')]"
                ".filter(marks => marks.getBoundingClientRect().width > 0).length")
IMAGES_SHOWN = "[...document.images].filter(image => image.complete && image.naturalWidth > 0).length"
DECADES = 2  # a chart whose values span this many powers of ten (or more) reads only on a log scale


def test_the_page_holds_the_library_versions_dvc_draws_with():
    """The page inlines the versions dvc-render's own page loads from the CDN."""
    from dvc_render.vega import VegaRenderer

    loaded = dict(re.findall(r"npm/([a-z-]+)@([\d.]+)", VegaRenderer.SCRIPTS))
    assert loaded == {package: version for package, (version, _) in LIBRARIES.items()}


def test_without_npm_the_page_loads_the_library_online_and_make_tries_again(tmp_path):
    """No npm: a warning naming it, a page DVC can fill (loading the CDN's scripts, as DVC's own),
    dated 1970 so that make writes it again once npm is there; exit 0, so `make run` goes on."""
    from dvc_render.vega import VegaRenderer

    page = tmp_path / "share" / "index.html"
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    result = subprocess.run([sys.executable, "-m", "dvc_tools.plots_page", str(page)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("warning: npm is needed once") and "apt-get install npm" in result.stderr
    scripts = re.findall(r'<script src="([^"]+)"', page.read_text())
    assert scripts == re.findall(r'<script src="([^"]+)"', VegaRenderer.SCRIPTS)
    assert "{plot_divs}" in page.read_text() and page.stat().st_mtime == 0


def y_values(content: dict) -> list[float]:
    return [row["dvc_inferred_y_value"] for row in content["data"]["values"] if "dvc_inferred_y_value" in row]


def on_log_scale(content: dict) -> bool:
    return '"scale": {"type": "log"' in json.dumps(content)


@pytest.mark.slow
def test_every_plot_dvc_lists_draws_offline(reproduced, chromium, tmp_path):
    path, _, _ = reproduced
    listed = json.loads(run(path, "dvc", "plots", "show", "--json", "-o", str(tmp_path / "json")).stdout)
    assert not listed.get("errors"), listed["errors"]
    plots = [plot | {"name": name} for name, items in listed["data"].items() for plot in items]
    charts = [plot for plot in plots if plot["type"] == "vega"]
    images = [plot for plot in plots if plot["type"] == "image"]
    assert len(charts) + len(images) == len(plots) and charts and images

    # A loss that falls by decades (the linear model's squared error) is drawn on a log axis.
    for chart in charts:
        values = y_values(chart["content"])
        spans = bool(values) and min(values) > 0 and max(values) / min(values) >= 10 ** DECADES
        assert on_log_scale(chart["content"]) or not spans, (chart["name"], min(values, default=None),
                                                         max(values, default=None))

    run(path, "dvc", "plots", "show", "-o", str(tmp_path / "html"))
    page_file = tmp_path / "html" / "index.html"
    html = page_file.read_text()
    assert not re.findall(r"<script[^>]*\ssrc=", html), "the page loads a script from elsewhere"

    with Browser(chromium) as browser:
        page = browser.open(page_file.as_uri(), height=5200, offline=True)
        drawn = page.wait_for(f"{CHARTS_DRAWN} === {len(charts)} && {IMAGES_SHOWN} === {len(images)}", 60)
        page.screenshot(OUTPUT / "plots.png")
        shown = page.evaluate(f"[{CHARTS_DRAWN}, {IMAGES_SHOWN}]")
    assert drawn, (f"offline, {shown[0]} of {len(charts)} charts and {shown[1]} of {len(images)} images "
                   f"drawn (screenshot: {OUTPUT / 'plots.png'})")
