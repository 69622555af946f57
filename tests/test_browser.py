"""JupyterLab in a real browser (headless Chromium, driven by Selenium): open the text notebook
notebooks/02_distill.py as a notebook, run its sandbox cell with a tiny override, see the result, save, and
find the saved text without outputs. Needs Debian's `chromium` and `chromium-driver`; `make test-browser`
runs it (it is marked `browser`, and skipped where Chromium is missing)."""
from __future__ import annotations

import difflib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium and chromium-driver (Debian)")]
TINY = 'sandbox.distil(cfg, layers=1, temperature=2.0, alpha=0.5, rows=64, epochs=1.0, experiment="browser")'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def project(tmp_path, data_dir, monkeypatch):
    """A copy of the project's notebooks and params (kdlib linked) whose 02 reads the smoke profile in the
    sandbox "browser", its sandbox call shrunk to a few seconds, with
    the smoke profile's 00 and 01 run into it, so 02's sandbox cell has a teacher to distil from."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(REPO / "params", root / "params")
    (root / "kdlib").symlink_to(REPO / "kdlib")
    shutil.copy(REPO / "jupytext.toml", root / "jupytext.toml")
    nb = root / "notebooks" / "02_distill.py"
    text = nb.read_text().replace('params_file = "../params/quick.yaml"', 'params_file = "../params/smoke.yaml"')
    text = text.replace("experiment = None", 'experiment = "browser"')  # the notebook itself in the sandbox too
    start = text.index("tried = sandbox.distil(")
    text = text[:start] + "tried = " + TINY + text[text.index("\n", start):]
    nb.write_text(text)
    hetero = root / "notebooks" / "05_hetero_kd.py"
    hetero.write_text(hetero.read_text().replace('params_file = "../params/quick.yaml"', 'params_file = "../params/smoke.yaml"'))
    monkeypatch.setenv("KD_REPORTS_DIR", str(root / "reports"))
    monkeypatch.setenv("KD_CACHE_DIR", str(root / ".cache"))
    monkeypatch.chdir(root)
    from kdlib.pipeline import runner
    runner.run(root / "params" / "smoke.yaml", only=["00", "01", "05"])
    return root


@pytest.fixture
def lab(project, tmp_path):
    """JupyterLab serving `project`, opening .py files as notebooks (the setting `make lab` writes)."""
    settings = tmp_path / "lab-settings" / "@jupyterlab"
    (settings / "docmanager-extension").mkdir(parents=True)
    (settings / "docmanager-extension" / "plugin.jupyterlab-settings").write_text(
        json.dumps({"defaultViewers": {"python": "Jupytext Notebook"}}))
    # Every cell in the DOM and rendered: by default JupyterLab skips rendering cells out of view, and their
    # text then reads empty to the driver (the test failed that way on a loaded machine).
    (settings / "notebook-extension").mkdir()
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port = _free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--IdentityProvider.token=",
         "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={project}",
         "--allow-root"],  # CI runs as root
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "lab.log").open("w"))
    for _ in range(120):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None, (tmp_path / "lab.log").read_text()[-2000:]
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


def _cell(driver, text: str):
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")
    found = [c for c in cells if text in c.find_element(By.CSS_SELECTOR, ".jp-InputArea").get_attribute("textContent")]
    assert found, f"no cell holds {text!r}"
    return found[0]


def _run(driver, text: str):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    cell = _cell(driver, text)
    _select(driver, cell)
    ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
    return cell


def _select(driver, cell):
    """Select a cell in command mode: scrolled to the middle of the view, then its prompt clicked (by script
    when a loaded browser has not made it clickable yet)."""
    from selenium.common.exceptions import ElementClickInterceptedException, ElementNotInteractableException
    from selenium.webdriver.common.by import By

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", cell)
    prompt = cell.find_element(By.CSS_SELECTOR, ".jp-InputPrompt")
    try:
        prompt.click()
    except (ElementNotInteractableException, ElementClickInterceptedException):
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('mousedown', {bubbles: true}));"
                              "arguments[0].dispatchEvent(new MouseEvent('mouseup', {bubbles: true}));"
                              "arguments[0].click();", prompt)


def _wait_for_output(driver, text: str, expected: str, seconds: float):
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        outputs = _cell(driver, text).find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
        shown = " ".join(o.text for o in outputs)
        if "Error" in shown and "Traceback" in shown:
            pytest.fail(f"the cell {text!r} failed: {shown[:500]}")
        if expected in shown:
            return shown
        time.sleep(1)
    pytest.fail(f"the cell {text!r} showed no {expected!r} in {seconds:.0f} s")


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _open(driver, url: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 120).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
    WebDriverWait(driver, 120).until(
        lambda d: "Idle" in d.find_element(By.CSS_SELECTOR, ".jp-StatusBar-Widget, #jp-main-statusbar").text)


def test_the_sliders_train_a_dense_student_per_click_in_jupyterlab(project, lab):
    """05's widget: run the notebook down to it (reading the dense runs 05 recorded), press `train`, and
    find a row of the table it fills."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = _driver()
    try:
        _open(driver, f"{lab}/lab/tree/notebooks/05_hetero_kd.py")
        cells = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")
        texts = [c.get_attribute("textContent") for c in cells]  # read from the DOM, seen or not
        first = next(i for i, t in enumerate(texts) if "params_file = " in t)  # the first code cell
        upto = next(i for i, t in enumerate(texts) if "sliders.temperature_alpha(" in t)
        _select(driver, cells[first])
        for _ in range(upto - first + 1):  # run each cell and move to the next, down to the sliders' cell
            ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        deadline = time.monotonic() + 600
        while not driver.find_elements(By.XPATH, "//button[normalize-space()='train']"):
            assert time.monotonic() < deadline, "the sliders never appeared"
            for error in driver.find_elements(By.CSS_SELECTOR, ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"):
                assert "Traceback" not in error.text, error.text[:800]
            time.sleep(2)
        driver.find_element(By.XPATH, "//button[normalize-space()='train']").click()
        _wait_for_output(driver, "sliders.temperature_alpha(", "val_accuracy", 300)
    finally:
        driver.quit()


def test_the_sandbox_runs_in_jupyterlab_and_the_saved_text_has_no_outputs(project, lab):
    written = (project / "notebooks" / "02_distill.py").read_text()
    driver = _driver()
    try:
        _open(driver, f"{lab}/lab/tree/notebooks/02_distill.py")
        for text in ("params_file = ", "STEP, cfg, out = start(", "from kdlib.teach import sandbox"):
            _run(driver, text)
        shown = _wait_for_output(driver, "from kdlib.teach import sandbox", "val_accuracy", 300)
        assert "L1_F" in shown and "browser" not in shown  # the sandbox student's row
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys
        before = (project / "notebooks" / "02_distill.py").stat().st_mtime_ns
        ActionChains(driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
        deadline = time.monotonic() + 30
        while (project / "notebooks" / "02_distill.py").stat().st_mtime_ns == before:
            assert time.monotonic() < deadline, "JupyterLab did not save the notebook"
            time.sleep(0.5)
    finally:
        driver.quit()
    saved = (project / "notebooks" / "02_distill.py").read_text()
    assert saved == written, "".join(difflib.unified_diff(written.splitlines(True), saved.splitlines(True)))[:3000]
    assert (project / "reports" / "sandbox" / "browser" / "02_distill" / "runs").is_dir()
    assert not (project / "reports" / "smoke" / "02_distill").exists()  # the sandbox wrote nothing there
