"""The report in a real browser: headless Chromium renders every image and table, logs no
console error, and loads nothing from the network. Also leaves a screenshot.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (CI installs
them); skipped with the reason otherwise. ``INITLAB_UPDATE_SCREENSHOT=1`` also writes the top
of the page to ``docs/img/report.png`` (the README's picture).
"""

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from initlab.config import RunConfig
from initlab.report import build_report
from initlab.results import ResultSet
from initlab.train.run import load_data, run_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
README_IMAGE = Path(__file__).resolve().parents[1] / "docs" / "img" / "report.png"
WIDTH, README_HEIGHT = 1280, 1700
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs headless Chromium: apt-get install -y chromium chromium-driver",
)


def realistic_report(out: Path) -> Path:
    """A small real comparison on digits (3 seeds, 3 epochs) with per-layer tracking."""
    inits = ["he_normal", "glorot_uniform", "random_normal", "zeros"]
    settings = dict(dataset="digits", hidden=(32, 32), epochs=3, lr=0.1, track="epoch")
    configs = [RunConfig(init=init, seed=seed, **settings) for init in inits for seed in range(3)]
    data = load_data(configs[0])
    runs = [run_config(config, data) for config in configs]
    layer_stats = pd.DataFrame(
        [{"run_id": r.config.key(), **row} for r in runs for row in r.layer_stats]
    )
    results = ResultSet.from_results(runs)
    paths = build_report(results, out, layer_stats=layer_stats, title="initlab: init schemes")
    return paths.html


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    options = webdriver.ChromeOptions()
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={WIDTH},{README_HEIGHT}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def test_report_renders_in_headless_chromium(tmp_path, browser):
    html = realistic_report(tmp_path / "report")
    browser.get(html.as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"
    )
    assert len(images) == 3  # curves, accuracy, gradients
    assert all(complete and width > 0 for complete, width, _ in images), images
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('table'))"
        ".map(t => t.tBodies.length ? t.tBodies[0].rows.length : 0)"
    )
    assert len(rows) >= 3 and all(n > 0 for n in rows), rows
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(name.startswith("data:") for name in resources), resources
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    if os.environ.get("INITLAB_UPDATE_SCREENSHOT"):
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(README_IMAGE))
    browser.find_element("css selector", "details summary").click()
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WIDTH, min(height + 150, 16000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
