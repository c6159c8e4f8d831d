"""The notebooks as a person meets them: JupyterLab in a real (headless) Chromium, driven by Playwright.

Notebook 06 is run in JupyterLab with kernel ``python3``; its query explorer (an ipywidgets picker
there) is moved to two different queries, and what appears must change and be real images. Notebook
00's stored figures must render. Screenshots go to ``runs/browser/``. Needs Debian's ``chromium``
(``make test-browser`` installs it with apt-get) and the ``playwright`` package; the smoke stage
cache that ``make nbval`` builds makes notebook 06 quick (without it the notebook builds its world).
"""

import base64
import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = os.environ.get("OVKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = REPO / "runs" / "browser"


def _skip_reason() -> str | None:
    if not CHROMIUM:
        return "no chromium: apt-get install chromium (make test-browser does), or set OVKIT_CHROMIUM"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "no playwright: pip install -e '.[dev]'"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a copy of the notebooks (the app exposed to the page, so a test can run commands)."""
    root = tmp_path_factory.mktemp("lab")
    for notebook in ("00_catalogue.ipynb", "06_online_ab_and_report.ipynb"):
        shutil.copy(REPO / "notebooks" / notebook, root / notebook)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "OVKIT_RUNS": str(root / "runs"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    env.pop("OVKIT_PROFILE", None)  # a person's session: interactive, so the explorer is a widget
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--allow-root",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.disable_check_xsrf=True",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("jupyter lab did not start within a minute")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser, url, token
        browser.close()
    server.terminate()
    server.wait(30)


def _open(browser, url, token, notebook):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/lab/tree/{notebook}?token={token}")
    page.wait_for_function(
        "window.jupyterapp && window.jupyterapp.shell.currentWidget "
        "&& window.jupyterapp.shell.currentWidget.context "
        "&& window.jupyterapp.shell.currentWidget.context.isReady",
        timeout=120_000,
    )
    return page


def _image(src: str) -> np.ndarray:
    from PIL import Image

    assert src.startswith("data:image/png;base64,"), src[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def _cells(card: np.ndarray, rows: int, cols: int) -> dict:
    """The centres of the explorer card's grid cells (title strips left out), by (row, col)."""
    h, w = card.shape[0] / rows, card.shape[1] / cols
    return {
        (r, c): card[int((r + 0.45) * h) : int((r + 0.85) * h), int((c + 0.2) * w) : int((c + 0.8) * w)]
        for r in range(rows)
        for c in range(cols)
    }


def test_the_explorer_in_jupyterlab_shows_new_real_images_for_each_query(lab):
    browser, url, token = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = _open(browser, url, token, "06_online_ab_and_report.ipynb")
    page.wait_for_function(
        "window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.name", timeout=120_000
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    slider = page.locator(".widget-slider").first
    expect(slider).to_be_visible(timeout=900_000)  # the whole notebook runs first (A/B test included)
    card = page.locator(".widget-output img").first
    expect(card).to_be_visible(timeout=120_000)
    card.scroll_into_view_if_needed()
    first_src = card.get_attribute("src")
    page.screenshot(path=str(SHOTS / "explorer-1.png"), full_page=False)
    readout = page.locator(".widget-slider .widget-readout").first
    first_query = readout.inner_text()
    for _ in range(5):  # "random" can land on the same query: try again
        page.get_by_role("button", name="random").first.click()
        page.wait_for_function(
            f"document.querySelector('.widget-output img')?.src !== {first_src!r}", timeout=120_000
        )
        if readout.inner_text() != first_query:
            break
    second_src = card.get_attribute("src")
    page.screenshot(path=str(SHOTS / "explorer-2.png"), full_page=False)
    assert readout.inner_text() != first_query
    one, two = _image(first_src), _image(second_src)
    assert one.shape == two.shape and one.std() > 20 and two.std() > 20  # decoded, and not blank
    rows, cols = 3, 11  # photo + history; OneVision; the cascade — each a label cell and 10 SKUs
    a, b = _cells(one, rows, cols), _cells(two, rows, cols)
    changed = {cell: np.abs(a[cell].astype(int) - b[cell].astype(int)).mean() > 2 for cell in a}
    assert changed[(0, 0)], "the shopper's photo did not change"
    for row in (1, 2):  # both systems' top-5
        assert sum(changed[(row, col)] for col in range(1, 6)) >= 3, f"row {row}'s top-5 did not change"
        assert all(a[(row, col)].std() > 5 for col in range(1, 6)), f"row {row} has blank results"


def test_notebook_00s_stored_figures_render(lab):
    browser, url, token = lab
    page = _open(browser, url, token, "00_catalogue.ipynb")
    images = page.locator(".jp-OutputArea-output img")
    page.wait_for_function(
        "document.querySelectorAll('.jp-OutputArea-output img').length >= 3", timeout=60_000
    )
    # JupyterLab renders cells lazily as they scroll into view (and may hide off-screen ones), so the
    # check reads every figure the page holds, decoded by the browser, without needing it on screen
    page.wait_for_function(
        "[...document.querySelectorAll('.jp-OutputArea-output img')].every(i => i.complete)", timeout=60_000
    )
    sizes = images.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight, i.src])")
    assert len(sizes) >= 3
    for i, (width, height, src) in enumerate(sizes):
        assert width > 50 and height > 50, f"figure {i} did not render: {width}×{height}"
        assert _image(src).std() > 10, f"figure {i} is blank"
    page.screenshot(path=str(SHOTS / "notebook-00.png"), full_page=False)
