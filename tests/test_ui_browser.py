"""The dashboard in real headless Chromium (the OS package, driven by Selenium through the OS
chromedriver), against a real uvicorn server on a free port: the runs list, a run waiting for
approval with its graph, approving it with a comment and watching it complete without a reload,
a failed step's error, and forking the failed run from that step until the fork completes.
Screenshots of the run page are saved under tests/artifacts/ (gitignored).

Skipped (reported as skipped) when Chromium or chromedriver cannot start, unless
``BATTEN_REQUIRE_SERVICES`` names ``chromium`` (as ``.ci/run`` sets it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

from batten.ui import create_app  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from ui_workflows import FLAKY, approval_workflow, flaky_workflow  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"


def _unavailable(why: str) -> None:
    required = os.environ.get("BATTEN_REQUIRE_SERVICES", "").split(",")
    if "chromium" in (s.strip() for s in required):
        pytest.fail(f"BATTEN_REQUIRE_SERVICES names chromium, but {why}")
    pytest.skip(why)


@pytest.fixture
def browser() -> Iterator[Any]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if exe is None or driver_exe is None:
        _unavailable("chromium and chromedriver are not installed (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1400,1800")
    try:
        driver = webdriver.Chrome(service=Service(driver_exe), options=opts)
    except Exception as exc:  # a browser that cannot start: reported, never passed
        _unavailable(f"chromium did not start: {type(exc).__name__}: {exc}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def dashboard() -> Iterator[Callable[..., str]]:
    """Starts a real uvicorn serving ``create_app(store, **kw)`` on a free port when called;
    returns its base URL. Every server started is stopped at the end."""
    started: list[tuple[Any, threading.Thread]] = []

    def start(store: str, **kw: Any) -> str:
        app = create_app(store, **kw)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        started.append((srv, thread))
        deadline = time.monotonic() + 20
        while not srv.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for srv, thread in started:
            srv.should_exit = True
            thread.join(timeout=10)


@pytest.fixture
def server(tmp_path: Path, dashboard: Callable[..., str]) -> Iterator[tuple[str, str]]:
    """The dashboard over a SQLite file knowing the two test workflows: (base URL, store URL)."""
    FLAKY["fail"], FLAKY["calls"] = True, []
    url = "sqlite:///" + str(tmp_path / "runs.db")
    base = dashboard(
        url,
        workflows={"reviewed": approval_workflow(), "flaky": flaky_workflow()},
        identity="carol",
    )
    try:
        yield base, url
    finally:
        FLAKY["fail"] = True


def _wait(driver: Any, what: Any, timeout: float = 30) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(what)


def _shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")


def _node_status(driver: Any, step: str) -> str | None:
    # Read in one script call: the page redraws the graph as the run moves on.
    status: str | None = driver.execute_script(
        "const n = document.querySelector(`#graph .node[data-step='${arguments[0]}']`);"
        "return n ? n.dataset.status : null;",
        step,
    )
    return status


def _click(driver: Any, selector: str) -> None:
    """A real click event on the element ``selector`` names (found and clicked in one call)."""
    driver.execute_script(
        "document.querySelector(arguments[0])"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true}));",
        selector,
    )


def test_approve_in_the_browser_then_fork_a_failed_run(browser: Any, server: Any) -> None:
    base, url = server
    waiting = asyncio.run(approval_workflow().execute(store=url)).run_id
    failed = asyncio.run(flaky_workflow().execute(store=url)).run_id

    # The runs list shows both runs; open the waiting one from it.
    browser.get(base + "/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-run="{waiting}"]'))
    _click(browser, f'tr[data-run="{waiting}"] a')
    _wait(browser, lambda d: _node_status(d, "review") == "waiting_approval")
    assert _node_status(browser, "prepare") == "completed"
    assert _node_status(browser, "publish") == "pending"
    _shot(browser, "run-waiting-approval")

    # Approve with a comment; the page updates by itself (no reload): the marker set on the
    # window before would be gone after a reload.
    browser.execute_script("window.__noReload = true")
    box = browser.find_element(By.CSS_SELECTOR, '.approval[data-step="review"]')
    box.find_element(By.CSS_SELECTOR, ".comment").send_keys("looks good")
    box.find_element(By.CSS_SELECTOR, ".approve").click()
    _wait(browser, lambda d: _node_status(d, "publish") == "completed")
    _wait(browser, lambda d: "completed" in d.find_element(By.ID, "run-status").text)
    assert browser.execute_script("return window.__noReload") is True
    assert "approved by carol" in browser.find_element(By.ID, "timeline").text
    assert "looks good" in browser.find_element(By.ID, "timeline").text
    _shot(browser, "run-approved-completed")

    # The failed run: open its failed step's error.
    browser.get(f"{base}/runs/{failed}")
    _wait(browser, lambda d: _node_status(d, "fetch") == "failed")
    _click(browser, '#graph .node[data-step="fetch"]')
    err = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#step .error-type"))
    assert err[0].text == "ConnectionError"
    assert "upstream said no" in browser.find_element(By.CSS_SELECTOR, "#step .traceback").text
    # ...and its traceback text: the raising frame and the exception line.
    tb = browser.find_element(By.CSS_SELECTOR, "#step .traceback-text pre").text
    assert "in fetch" in tb and "ConnectionError: upstream said no" in tb
    _shot(browser, "run-failed-step-error")

    # Fork it from the failed step (preselected); the fork's page shows it completing.
    FLAKY["fail"], FLAKY["calls"] = False, []
    assert browser.find_element(By.ID, "fork-step").get_attribute("value") == "fetch"
    browser.find_element(By.ID, "fork").click()
    _wait(browser, lambda d: failed not in d.current_url and "/runs/" in d.current_url)
    _wait(browser, lambda d: _node_status(d, "report") == "completed")
    _wait(browser, lambda d: "completed" in d.find_element(By.ID, "run-status").text)
    assert "forked from" in browser.find_element(By.ID, "summary").text
    assert sorted(FLAKY["calls"]) == ["fetch", "report"]
    _shot(browser, "run-fork-completed")


ROOT = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.skipif(
    not (STDLIB / "json").is_dir(), reason="this Python ships without the standard library"
)
def test_the_code_review_example_is_approved_in_the_browser(
    browser: Any, dashboard: Callable[..., str], tmp_path: Path, monkeypatch: Any
) -> None:
    """The README's first command without ``--yes`` (on the json package, for time) stops at
    its approval gate; the dashboard, knowing nothing but the store, shows it and continues it
    from the workflow file the run recorded."""
    monkeypatch.chdir(tmp_path)
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "BATTEN_STORE"):
        monkeypatch.delenv(var, raising=False)
    url = "sqlite:///" + str(tmp_path / "runs.db")
    workflow = str(ROOT / "examples" / "code_review" / "workflow.yaml")
    target = f"target={STDLIB / 'json'}"
    done = subprocess.run(
        [sys.executable, "-m", "batten", "run", workflow, "--input", target, "--store", url, "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")},
    )
    assert done.returncode == 3, done.stderr  # waiting for approval
    run_id = next(
        line.split()[1].rstrip(":") for line in done.stdout.splitlines() if line.startswith("run ")
    )
    base = dashboard(url, token="dana:s3cret")

    browser.get(f"{base}/?token=s3cret")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-run="{run_id}"]'))
    _click(browser, f'tr[data-run="{run_id}"] a')
    _wait(browser, lambda d: _node_status(d, "approve") == "waiting_approval")
    for step in ("discover", "ruff", "radon", "bandit", "collect", "triage"):
        assert _node_status(browser, step) == "completed", step
    assert _node_status(browser, "publish") == "pending"
    # A map step is a composite: selecting it lists its items with their statuses.
    _click(browser, '#graph .node[data-step="ruff"]')
    _wait(browser, lambda d: "ruff/run_ruff[0]" in d.find_element(By.ID, "step").text)
    _shot(browser, "code-review-waiting-approval")

    box = browser.find_element(By.CSS_SELECTOR, '.approval[data-step="approve"]')
    box.find_element(By.CSS_SELECTOR, ".comment").send_keys("publish it")
    box.find_element(By.CSS_SELECTOR, ".approve").click()
    _wait(browser, lambda d: _node_status(d, "publish") == "completed", timeout=120)
    _wait(browser, lambda d: "completed" in d.find_element(By.ID, "run-status").text)
    assert "approved by dana" in browser.find_element(By.ID, "timeline").text
    assert (tmp_path / "review-report" / "report.md").is_file()
    _shot(browser, "code-review-approved-completed")
