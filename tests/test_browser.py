"""The labelling page in a real browser: Debian's Chromium, driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelgrid import QueueClient
from labelgrid.demo import seed_demo
from labelgrid.stack import page_command
from tests.conftest import IN_CI
from tests.support.ports import free_port
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = os.environ.get("LABELGRID_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def page_server(service: ServiceProcess, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "LABELGRID_SERVER": service.address,
        "LABELGRID_PROJECT": "digits",
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    proc = subprocess.Popen(
        page_command(port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "voila.log", "wb"),
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:  # a TCP connect only: requesting the page would already run the notebook
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError((tmp_path / "voila.log").read_text()[-3000:]) from None
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(20)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_label_digits_in_the_browser(
    service: ServiceProcess, database_url: str, page_server: str
) -> None:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"Chromium is required under CI: {CHROMIUM} not found")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with QueueClient(service.address) as client:
        assert seed_demo(client, n=50) == 50
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(page_server, timeout=90_000)
            # the worker-id prompt comes first, and nothing is shown before it is answered
            start = page.get_by_role("button", name="Start labelling")
            start.wait_for(timeout=90_000)
            assert page.get_by_role("button", name="Skip").count() == 0
            box = page.get_by_placeholder("your name or id")
            box.fill("browser-user")
            box.press("Enter")
            start.click()
            page.get_by_role("button", name="7", exact=True).wait_for(timeout=30_000)
            page.wait_for_selector("img", timeout=30_000)
            for digit in ("0", "1", "2", "3"):
                page.get_by_role("button", name=digit, exact=True).click()
                page.wait_for_timeout(300)
            page.get_by_role("button", name="Skip").click()
            page.get_by_text("4 / 50 labelled").wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "voila-labelling.png"))
        finally:
            browser.close()
    rows = query(database_url, "SELECT worker_id, labels FROM annotations ORDER BY id")
    assert rows == [("browser-user", f'["{d}"]') for d in "0123"]
