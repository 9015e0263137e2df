"""The labelling page in a real browser: Debian's Chromium, driven by Playwright.

Everything a person would type goes through real key events (`keyboard.type`/`press`),
never `fill()`, which sets an input's value without any keystroke and so hides bugs in how
the widget handles keys.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labelgrid import QueueClient
from labelgrid.demo import seed_demo
from labelgrid.stack import page_command
from tests.support.browser import ARTIFACTS, launch_chromium
from tests.support.ports import free_port
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query

N_ITEMS = 50
ANIMALS = ["cat", "dog", "bird"]


@pytest.fixture
def page_project() -> str:
    """The project the page labels; tests override it with parametrize."""
    return "digits"


@pytest.fixture
def page_server(service: ServiceProcess, tmp_path: Path, page_project: str) -> Iterator[str]:
    with QueueClient(service.address) as client:
        if page_project != "digits":  # made first, so seed_demo keeps these options
            client.create_project(page_project, ANIMALS, allow_other=True)
        assert seed_demo(client, project=page_project, n=N_ITEMS) == N_ITEMS
    port = free_port()
    env = {
        **os.environ,
        "LABELGRID_SERVER": service.address,
        "LABELGRID_PROJECT": page_project,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    env.pop("LABELGRID_WORKER_ID", None)  # the page must ask for the name
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


@pytest.fixture
def chromium() -> Iterator[Any]:
    yield from launch_chromium()


def _start(browser: Any, url: str, worker: str, width: int = 1000, enter: bool = False) -> Any:
    """Open the page and answer the name prompt by typing, as a person does."""
    page = browser.new_page(viewport={"width": width, "height": 740})
    page.goto(url, timeout=90_000)
    start = page.get_by_role("button", name="Start labelling")
    start.wait_for(timeout=90_000)
    assert page.get_by_role("button", name="Skip").count() == 0  # nothing before the name
    box = page.get_by_placeholder("your name or id")
    box.click()
    page.keyboard.type(worker)
    assert box.input_value() == worker
    if enter:
        box.press("Enter")
    else:
        start.click()
    page.get_by_role("button", name="Skip").wait_for(timeout=30_000)
    page.wait_for_selector(".labelgrid-labeller img", timeout=30_000)
    return page


def _labelled(page: Any, n: int) -> None:
    page.get_by_text(f"{n} / {N_ITEMS} labelled", exact=True).wait_for(timeout=30_000)


def _press(page: Any, key: str) -> None:
    """A shortcut key, with the pointer over the item (keys reach the labeller under it)."""
    page.locator(".labelgrid-labeller img").hover()
    page.keyboard.press(key)


def _annotations(database_url: str) -> list[tuple[str, str]]:
    return query(database_url, "SELECT worker_id, labels FROM annotations ORDER BY id")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_label_digits_by_click_and_by_number_key(
    service: ServiceProcess, database_url: str, page_server: str, chromium: Any
) -> None:
    page = _start(chromium, page_server, "browser-user")
    page.get_by_role("button", name="3", exact=True).click()
    _labelled(page, 1)
    for n, key in enumerate("820", start=2):  # each digit key stores that digit
        _press(page, key)
        _labelled(page, n)
    _press(page, "Space")  # skip: nothing stored
    page.get_by_role("button", name="9", exact=True).click()
    _labelled(page, 5)
    page.screenshot(path=str(ARTIFACTS / "voila-labelling.png"))
    assert _annotations(database_url) == [("browser-user", f'["{d}"]') for d in "38209"]
    legend = page.locator(".labelgrid-keys").inner_text()
    assert "Space" in legend and "Backspace" in legend


@pytest.mark.parametrize("backend", ["sqlite"])
def test_other_box_takes_typing_and_enter_submits_it(
    service: ServiceProcess, database_url: str, page_server: str, chromium: Any
) -> None:
    page = _start(chromium, page_server, "typist", enter=True)
    page.get_by_role("button", name="5", exact=True).click()
    _labelled(page, 1)
    other = page.get_by_placeholder("Other:")
    other.click()
    page.keyboard.type("1xy")
    page.keyboard.press("Backspace")  # edits the text, does not undo the "5"
    assert other.input_value() == "1x"
    page.wait_for_timeout(1500)  # time for a wrongly fired shortcut to reach the database
    assert _annotations(database_url) == [("typist", '["5"]')]
    page.get_by_text(f"1 / {N_ITEMS} labelled", exact=True).wait_for()
    page.screenshot(path=str(ARTIFACTS / "voila-other-typing.png"))
    page.keyboard.press("Enter")
    _labelled(page, 2)
    assert other.input_value() == ""
    page.wait_for_timeout(1500)
    assert _annotations(database_url) == [("typist", '["5"]'), ("typist", '["1x"]')]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("page_project", ["animals"])
def test_keys_follow_button_order_and_errors_clear(
    service: ServiceProcess, database_url: str, page_server: str, chromium: Any
) -> None:
    page = _start(chromium, page_server, "keys")
    for i, option in enumerate(ANIMALS, start=1):
        page.get_by_role("button", name=f"[{i}] {option}", exact=True).wait_for()
    page.get_by_role("button", name="Undo").click()  # nothing to undo yet: an error
    error = page.get_by_text("nothing to undo", exact=False)
    error.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "voila-error.png"))
    _press(page, "1")
    _labelled(page, 1)
    error.wait_for(state="hidden", timeout=10_000)  # the next label clears it
    _press(page, "3")
    _labelled(page, 2)
    page.get_by_role("button", name="[2] dog", exact=True).click()
    _labelled(page, 3)
    page.screenshot(path=str(ARTIFACTS / "voila-animals.png"))
    assert _annotations(database_url) == [("keys", f'["{a}"]') for a in ("cat", "bird", "dog")]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_phone_width_buttons_wrap_and_stay_readable(
    service: ServiceProcess, database_url: str, page_server: str, chromium: Any
) -> None:
    page = _start(chromium, page_server, "phone", width=360)
    buttons = page.locator(".labelgrid-labeller button")
    sizes = buttons.evaluate_all(
        "els => els.map(e => [e.textContent, e.scrollWidth, e.clientWidth,"
        " e.getBoundingClientRect().right])"
    )
    assert len(sizes) == 10 + 2
    for text, scroll_width, client_width, right in sizes:
        assert scroll_width <= client_width, f"{text!r} is cut short"
        assert right <= 360, f"{text!r} is off screen"
    page.screenshot(path=str(ARTIFACTS / "voila-phone.png"), full_page=True)
    page.get_by_role("button", name="7", exact=True).click()
    _labelled(page, 1)
    assert _annotations(database_url) == [("phone", '["7"]')]
