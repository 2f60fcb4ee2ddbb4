"""report.html in a real headless browser (Chromium through Selenium), at a phone's width.

.ci/run installs Chromium (apt-get install chromium chromium-driver) and sets
KERASXFER_BROWSER_TEST=required, so CI always runs this test; elsewhere it
skips with the install command when Chromium is missing.
"""

import io
import os
import shutil

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
INSTALL = "apt-get install chromium chromium-driver (and pip install selenium, in the dev extra)"


def _browser(width: int, height: int):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        selenium = None
    else:
        selenium = True
    if not (CHROMIUM and DRIVER and selenium):
        if os.environ.get("KERASXFER_BROWSER_TEST") == "required":
            pytest.fail(f"the browser test is required here but Chromium or Selenium is missing: {INSTALL}.")
        pytest.skip(f"no Chromium/Selenium for the browser test: {INSTALL}.")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--allow-file-access-from-files",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from kerasxfer import recipes
    from kerasxfer.config import DataConfig
    from kerasxfer.reporting.compare_report import write_report
    from kerasxfer.training import run_experiment

    base = tmp_path_factory.mktemp("html")
    runs = []
    for name, widths in (("small", (8,)), ("wider", (16,))):
        exp = recipes.scratch(
            epochs=2, widths=widths, data=DataConfig(dataset="digits", image_size=16, batch_size=64), out_dir=str(base / name)
        )
        run_experiment(exp.validate())
        runs.append(str(base / name))
    summary = write_report(runs, str(base / "report"))
    return base / "report" / "report.html", summary


def test_the_html_report_is_one_self_contained_file_with_the_verdict_first(report):
    page, summary = report
    text = page.read_text()
    assert 'src="data:image/png;base64,' in text and 'src="curves.png"' not in text
    verdict = text.index("class='verdict'")
    assert verdict < text.index("<table") and "Per class and top losses" in text


def test_the_html_report_loads_in_chromium_at_phone_width_with_every_picture_and_no_error(report, tmp_path):
    from PIL import Image

    page, summary = report
    driver = _browser(390, 844)
    try:
        driver.get(page.as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        sizes = driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert len(sizes) >= 5 and all(done and w > 0 for done, w in sizes), sizes
        verdict = driver.find_element("css selector", "li.verdict")
        first = summary["summary"][0].replace("**", "")
        assert verdict.is_displayed() and verdict.text.strip().startswith(first[:60]), verdict.text
        rect = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert rect[0] <= rect[1] + 1, f"the page scrolls sideways at phone width: {rect}"  # tables scroll alone
        shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L"), np.float32)
        assert shot.std() > 5.0, "the screenshot is blank"
    finally:
        driver.quit()
