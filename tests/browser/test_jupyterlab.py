"""The widgets in a real JupyterLab, driven in headless Chromium (Debian's /usr/bin/chromium, via
playwright): the workshop notebooks run, images and the map render, the mask-ratio slider
changes the reconstruction, and a click on the map reaches Python and redraws the similarity
overlay; the change map swipes between two dates and its threshold slider changes the change
layer and the area it reports. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("OFA_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
NOTEBOOKS = (
    "02_masked_reconstruction.ipynb",
    "03_embeddings_map.ipynb",
    "04_classify_scene.ipynb",
    "01_modalities_tour.ipynb",
    "05_pretrain_tiny.ipynb",
    "06_change_between_dates.ipynb",
)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists()
    or shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None,
    reason="needs Debian's chromium (`apt-get install chromium`) and jupyterlab",
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    (root / "data").symlink_to(ROOT / "notebooks" / "data", target_is_directory=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(12)
    home = tmp_path_factory.mktemp("jupyter-home")  # no user settings or workspaces
    settings = home / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # render every cell (JupyterLab 4 only renders the cells in view by default)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            *(["--allow-root"] if os.geteuid() == 0 else []),
            f"--config={ROOT / 'workshop-lab' / 'jupyter_lab_config.py'}",  # no news pop-up
            "--LabApp.expose_app_in_browser=True",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, (home / "lab.log").read_text()[-3000:]
            assert time.time() - t0 < 90, "JupyterLab did not start"
            time.sleep(0.5)
    yield url, token, root
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield b
        b.close()


def run_notebook(browser, lab, name: str):
    url, token, _ = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{url}/lab/tree/{name}?token={token}")
    page.wait_for_function("window.jupyterapp !== undefined", timeout=90_000)
    find = (
        "Array.from(window.jupyterapp.shell.widgets('main'))"
        f".find(w => w.context && w.context.path === '{name}')"
    )
    page.wait_for_function(f"() => {find} !== undefined", timeout=90_000)
    page.evaluate(f"""async () => {{  // Run > Run All Cells, once the kernel is connected
        const app = window.jupyterapp, panel = {find};
        app.shell.activateById(panel.id);
        await panel.context.ready;
        await panel.sessionContext.ready;
        app.commands.execute('notebook:run-all-cells');
    }}""")
    try:
        page.wait_for_function(
            f"""() => {{  // every code cell has run, the kernel is idle
            const panel = {find};
            const cells = panel.content.widgets.filter(c => c.model.type === 'code');
            return cells.every(c => c.model.executionCount !== null)
                && panel.sessionContext.session.kernel.status === 'idle';
        }}""",
            timeout=180_000,
        )
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"failed_{name}.png"))
        raise
    # JupyterLab draws error outputs (tracebacks) and stderr alike, as stderr text
    errors = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()
    return page


def sources(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.src)")


def wait_for_change(page, selector: str, before: list[str], timeout: float = 60) -> list[str]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        now = sources(page, selector)
        if now != before:
            return now
        page.wait_for_timeout(250)
    raise AssertionError(f"{selector} did not change in {timeout} s")


def test_mask_ratio_slider_changes_the_reconstruction(browser, lab):
    page = run_notebook(browser, lab, NOTEBOOKS[0])
    images = "img.widget-image"
    page.wait_for_function(f"document.querySelectorAll('{images}').length >= 12")
    before = sources(page, images)
    assert all(src.startswith("blob:") or src.startswith("data:") for src in before)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(".widget-slider").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "reconstruction_before.png"))
    readout = page.locator(".widget-slider .widget-readout").first
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.3")
    page.keyboard.press("Enter")
    after = wait_for_change(page, images, before)
    assert after[:4] != before[:4]  # the first explorer's panels were redrawn by Python
    # the score line is set after the panels, so wait for it too (CI once read it in between)
    page.get_by_text(re.compile(r"\b3[01]% hidden")).first.wait_for(timeout=60_000)  # 20 of 64
    page.screenshot(path=str(ARTIFACTS / "reconstruction_after.png"))
    page.close()


def layer_styles(page, selector: str) -> list[dict]:
    """Opacity and image rendering of each map overlay, as the browser computes them."""
    return page.eval_on_selector_all(
        selector,
        """els => els.map(e => {
        const style = getComputedStyle(e);
        return {opacity: parseFloat(style.opacity), rendering: style.imageRendering};
    })""",
    )


def test_map_renders_and_a_click_updates_the_similarity_overlay(browser, lab):
    page = run_notebook(browser, lab, NOTEBOOKS[1])
    overlays = "img.leaflet-image-layer"
    page.wait_for_function(f"document.querySelectorAll('{overlays}').length >= 3")
    before = sources(page, overlays)
    page.locator(".leaflet-container").first.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    styles = layer_styles(page, overlays)
    # after Run All: the PCA colours alone (no similarity yet), drawn pixel for pixel
    assert styles[1]["opacity"] > 0.5, styles
    assert all(s["rendering"] == "pixelated" for s in styles), styles
    page.get_by_text("Click the map: patches like the clicked one light up").wait_for()
    colour_bar = page.locator(".widget-html:has-text('cosine similarity')")
    assert colour_bar.count() == 0  # no colour bar before a click
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "notebook03_after_run_all.png"))
    page.locator(".leaflet-container").first.screenshot(
        path=str(ARTIFACTS / "notebook03_pca_view.png")
    )
    box = page.locator(overlays).first.bounding_box()  # the scene itself, within the map
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.35)
    try:
        after = wait_for_change(page, overlays, before)
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "embedding_notebook.png"))
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed == [2], changed  # only the similarity overlay: scene and PCA stay
    page.locator("text=at or above").first.wait_for(timeout=60_000)  # set after the overlay
    colour_bar.first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)  # let the browser paint the new overlay
    page.locator(".leaflet-container").first.screenshot(path=str(ARTIFACTS / "embedding_map.png"))
    page.close()


def test_real_scene_class_map_after_run_all(browser, lab):
    """Notebook 04 on the full Sentinel-2 scene: a class map of several classes over the scene,
    the two overlays sharing one extent, and the area table."""
    page = run_notebook(browser, lab, NOTEBOOKS[2])
    overlays = "img.leaflet-image-layer"
    page.wait_for_function(f"document.querySelectorAll('{overlays}').length >= 2")
    page.locator(".leaflet-container").first.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)  # let the browser paint the overlays
    scene, classes = page.locator(overlays).nth(0), page.locator(overlays).nth(1)
    a, b = scene.bounding_box(), classes.bounding_box()
    for key in ("x", "y", "width", "height"):  # the class map ends where the scene ends
        assert abs(a[key] - b[key]) < 1.0, (a, b)
    assert all(s["rendering"] == "pixelated" for s in layer_styles(page, overlays))
    rows = page.locator("table tr").all_inner_texts()
    assert sum(" ha" not in r and "%" in r for r in rows) >= 3, rows  # three classes or more
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "notebook04_after_run_all.png"), full_page=False)
    page.locator(".leaflet-container").first.screenshot(
        path=str(ARTIFACTS / "notebook04_class_map.png")
    )
    # "Your own classes" with a folder that is not there: one red line, no traceback
    run_cell(page, NOTEBOOKS[2], 'fit_scene_head(model, "my_chips/", "my_classes")')
    # JupyterLab draws an error output as stderr text: its traceback lines, here one
    error = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
    try:
        error.last.wait_for(timeout=60_000)
    finally:
        page.screenshot(path=str(ARTIFACTS / "notebook04_missing_folder.png"))
    text = error.last.inner_text().strip()
    assert text.startswith("labelled data not found: my_chips;") and "\n" not in text, text
    assert "Traceback" not in text and "site-packages" not in text, text
    page.close()


def run_cell(page, name: str, code: str) -> None:
    """Add a code cell at the end of the open notebook and run it, as a participant would."""
    find = (
        "Array.from(window.jupyterapp.shell.widgets('main'))"
        f".find(w => w.context && w.context.path === '{name}')"
    )
    page.evaluate(f"""async () => {{
        const app = window.jupyterapp, panel = {find};
        const notebook = panel.content;
        notebook.activeCellIndex = notebook.widgets.length - 1;
        await app.commands.execute('notebook:insert-cell-below');
        notebook.activeCell.model.sharedModel.setSource({code!r});
        await app.commands.execute('notebook:run-cell');
    }}""")


def test_raster_explorer_exercise_of_notebook_01(browser, lab):
    """Notebook 01's "Try it", typed into the NAIP explorer: a single-band file says why in the
    widget's words and its old picture goes; a 13-band file is shown. No news pop-up."""
    page = run_notebook(browser, lab, NOTEBOOKS[3])
    explorers = page.locator(".jp-OutputArea-output:has(input[placeholder*='path to a raster'])")
    explorers.nth(3).wait_for(timeout=60_000)
    naip = explorers.nth(3)  # eurosat, SAR, NEON, NAIP: the "Try it" is under NAIP
    naip.scroll_into_view_if_needed()
    naip.locator("img.widget-image").wait_for(state="visible", timeout=30_000)
    assert "rgbn" in naip.inner_text()
    box = naip.locator("input[placeholder*='path to a raster']")
    load = naip.locator("button[title='Load']")
    box.fill("data/s2_chesapeake/B08.tif")
    load.click()
    naip.get_by_text("no known sensor has 1 band").wait_for(timeout=30_000)
    message = naip.inner_text()
    assert "Modality" in message and "--modality" not in message and "modality=" not in message
    naip.locator("img.widget-image").wait_for(state="hidden", timeout=10_000)  # NAIP's is gone
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "notebook01_one_band.png"))
    box.fill("data/my_chips/Forest/Forest_1.tif")
    load.click()
    naip.get_by_text("Sentinel-2 L1C, 13 bands").wait_for(timeout=30_000)
    naip.locator("img.widget-image").wait_for(state="visible", timeout=10_000)
    assert page.get_by_text(re.compile("Jupyter news", re.I)).count() == 0
    page.close()


def test_run_all_of_notebook_05_ends_by_deleting_the_run_folder(browser, lab):
    """Notebook 05's last cell, the first step of its "stop and resume" exercise: it deletes the
    run folder with Python (no *Move to Trash*), so that the next training starts over."""
    run_folder = lab[2] / "runs" / "tiny-ofa"
    page = run_notebook(browser, lab, NOTEBOOKS[4])
    page.get_by_text(re.compile("final train loss")).first.wait_for()  # the run was written
    page.get_by_text("deleted runs/tiny-ofa: the next training starts over").wait_for()
    assert not run_folder.exists() and (lab[2] / "runs").is_dir()
    page.close()


def test_change_map_swipes_and_its_threshold_changes_the_layer_and_the_area(browser, lab):
    """Notebook 06: the two dates each in a pane that the swipe clips (one left, one right of
    the divider), the change layer on top; the threshold slider redraws the layer and the area
    in the status line; a click reports the score of a pixel."""
    page = run_notebook(browser, lab, NOTEBOOKS[5])
    widget = page.locator(".jp-OutputArea-output:has(.leaflet-container)").first
    overlays = widget.locator("img.leaflet-image-layer")
    overlays.nth(2).wait_for(timeout=60_000)  # before, after, change
    panes = ("before", "after", "overlay")  # the change layer is in Leaflet's overlay pane
    widget.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)  # let the browser paint the overlays and place the divider
    assert widget.locator(".leaflet-sbs-divider").count() == 1
    clips = [
        widget.locator(f".leaflet-{name}-pane").evaluate("e => e.style.clip")
        for name in ("before", "after")
    ]
    assert all(c.startswith("rect(") for c in clips) and clips[0] != clips[1], clips
    status = widget.get_by_text(re.compile(r"Score 3\.0 or more: [\d.]+ ha"))
    status.wait_for(timeout=30_000)
    said = status.inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    widget.locator(".leaflet-container").screenshot(path=str(ARTIFACTS / "change_map.png"))
    before = [widget.locator(f".leaflet-{name}-pane img").get_attribute("src") for name in panes]
    readout = widget.locator(".widget-slider .widget-readout").first  # Threshold
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("4.5")
    page.keyboard.press("Enter")
    widget.get_by_text(re.compile(r"Score 4\.5 or more: [\d.]+ ha")).wait_for(timeout=30_000)
    after = [widget.locator(f".leaflet-{name}-pane img").get_attribute("src") for name in panes]
    assert after[:2] == before[:2] and after[2] != before[2]  # only the change layer redrawn
    assert widget.get_by_text(re.compile(r"Score 4\.5 or more")).inner_text() != said
    box = widget.locator(".leaflet-before-pane img").bounding_box()  # away from the handle
    page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.2)
    widget.get_by_text(re.compile(r"Pixel row \d+, column \d+: score")).wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "notebook06_after_click.png"))
    page.close()
