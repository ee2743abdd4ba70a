"""`facegcn serve` in a real headless Chromium: upload → results, 3D viewer, screenshot; a bad upload
and an oversized one give one-line messages; stopping the server removes its temporary files.

Uses Debian's /usr/bin/chromium and /usr/bin/chromedriver with selenium 4 (nothing is downloaded;
skipped when they are missing). The server runs as a subprocess on 127.0.0.1 and a free port with
the pipeline's fast settings trimmed further, so a reconstruction takes seconds.
The screenshot goes to test-artifacts/serve_demo.png.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)"),
    pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="gradio is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("selenium") is None, reason="selenium is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server did not answer within {timeout} s")


@pytest.fixture
def server(tmp_path_factory):
    from facegcn.cli.reconstruct import build_config

    d = tmp_path_factory.mktemp("serve")
    cfg = build_config(fast=True, quiet=True, refine=True, texture_size=256)
    cfg.coarse.steps_rigid, cfg.coarse.steps_landmark, cfg.coarse.steps_photo, cfg.coarse.steps_identity = 15, 30, 10, 0
    cfg.threads = 1
    (d / "config.json").write_text(cfg.to_json())
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("GRADIO_TEMP_DIR", None)
    log = open(d / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "facegcn.serve", "--port", str(port), "--config", str(d / "config.json"),
                             "--timeout", "150", "--max-file-mb", "2", "--temp-dir", str(d / "tmp"), "-q"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc, 180)
        yield {"url": url, "proc": proc, "dir": d}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the server cleans its temporary files on SIGTERM
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="facegcn-chromium-")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1400,1700", "--force-device-scale-factor=1",
              "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # software WebGL for the 3D viewer
              f"--user-data-dir={profile}"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        import shutil

        shutil.rmtree(profile, ignore_errors=True)


def _upload_and_run(drv, url: str, path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(url)
    wait = WebDriverWait(drv, 60)
    inp = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#facegcn-upload input[type=file]")))
    inp.send_keys(str(path))
    wait.until(lambda d: path.stem in d.find_element(By.CSS_SELECTOR, "#facegcn-upload").text)
    drv.find_element(By.CSS_SELECTOR, "#facegcn-run").click()


def _body(drv) -> str:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.TAG_NAME, "body").text


def _canvas_fraction(shot: np.ndarray, rect: dict, background=(255, 255, 255)) -> float:
    x0, y0 = int(rect["x"]), int(rect["y"])
    crop = shot[y0:y0 + int(rect["height"]), x0:x0 + int(rect["width"]), :3].astype(int)
    assert crop.size, rect
    diff = np.abs(crop - np.array(background)).max(-1)
    return float((diff > 40).mean())


def _check_upload_shows_results_and_3d_viewer(server, browser, artifacts_dir, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from skimage import data

    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    t0 = time.time()
    _upload_and_run(browser, server["url"], photo)
    WebDriverWait(browser, 180, poll_frequency=1).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#facegcn-status").text.startswith("Done") or "rror" in _body(d))
    elapsed = time.time() - t0
    st = browser.find_element(By.CSS_SELECTOR, "#facegcn-status").text
    assert st.startswith("Done"), _body(browser)
    assert "landmark NME" in st
    # result images are loaded (coarse and refined), the figure too
    def loaded(sel):
        return browser.execute_script(
            "const i=document.querySelector(arguments[0]+' img'); return i && i.complete ? i.naturalWidth : 0;", sel)

    WebDriverWait(browser, 30).until(lambda d: loaded("#facegcn-coarse") > 0 and loaded("#facegcn-figure") > 0)
    assert loaded("#facegcn-coarse") == 224
    if "refined PSNR" in st:
        assert loaded("#facegcn-refined") == 224
    # the 3D viewer: a canvas that shows the face
    canvas = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "#facegcn-model3d canvas"))
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
    time.sleep(3)  # let the viewer render a few frames
    rect = browser.execute_script("const r=arguments[0].getBoundingClientRect(); return {x:r.x, y:r.y, width:r.width, height:r.height};", canvas)
    shot_path = artifacts_dir / "serve_demo.png"
    browser.save_screenshot(str(shot_path))
    shot = np.asarray(Image.open(shot_path).convert("RGB"))
    frac = _canvas_fraction(shot, rect)
    assert frac > 0.03, f"3D viewer looks empty ({frac:.3%} non-background pixels)"
    downloads = browser.find_element(By.CSS_SELECTOR, "#facegcn-downloads").text.replace("\n", "")
    assert "mesh.glb" in downloads and "facegcn-result.zip" in downloads
    print(f"reconstruction in the browser: {elapsed:.1f} s; viewer coverage {frac:.1%}")
    # the job folder was removed once Gradio had copied the results
    jobs = list((server["dir"] / "tmp").glob("facegcn-serve-*/jobs/*"))
    assert jobs == []


def _check_bad_upload_shows_one_line_error(server, browser, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "not-a-photo.png"
    bad.write_text("this is a text file renamed .png\n")
    _upload_and_run(browser, server["url"], bad)
    expected = "not-a-photo.png: not a recognised image file"
    WebDriverWait(browser, 120, poll_frequency=0.5).until(lambda d: expected in _body(d))
    body = _body(browser)
    line = next(l for l in body.splitlines() if expected in l)
    assert line.strip() == expected  # one line, no server path, no traceback
    assert "Traceback" not in body and "/tmp/" not in body


def _check_upload_size_limit(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    big = tmp_path / "huge.png"
    big.write_bytes(os.urandom(3 * 1024 * 1024))  # over the server's --max-file-mb 2
    browser.get(server["url"])
    inp = WebDriverWait(browser, 60).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#facegcn-upload input[type=file]")))
    inp.send_keys(str(big))
    WebDriverWait(browser, 60, poll_frequency=0.5).until(lambda d: "exceed the maximum allowed size" in _body(d))
    assert not list((server["dir"] / "tmp").glob("facegcn-serve-*/gradio/*/huge.png"))  # refused, not stored


def _check_stop_removes_temporary_files(server):
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert list((server["dir"] / "tmp").iterdir()) == []  # uploads, job folders and Gradio's cache


def test_web_demo_in_chromium(server, browser, artifacts_dir, tmp_path):
    """One server, one browser (a module split over xdist workers would start them twice)."""
    _check_upload_shows_results_and_3d_viewer(server, browser, artifacts_dir, tmp_path)
    _check_bad_upload_shows_one_line_error(server, browser, tmp_path)
    _check_upload_size_limit(server, browser, tmp_path)
    _check_stop_removes_temporary_files(server)
