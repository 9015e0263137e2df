"""The servers' event loop: uvloop where installed, asyncio's on request, a bad choice refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from labelgrid_serving import loop
from labelgrid_serving.security import ConfigError
from tests.test_security import labelgrid


async def _kind() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_runs_on_uvloop_and_asyncio_opts_out(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")  # the queue extra installs it on Linux
    monkeypatch.delenv("LABELGRID_EVENT_LOOP", raising=False)
    assert loop.run(_kind()).startswith("uvloop")
    monkeypatch.setenv("LABELGRID_EVENT_LOOP", "asyncio")
    assert loop.run(_kind()).startswith("asyncio")


def test_a_bad_choice_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LABELGRID_EVENT_LOOP", "tokio")
    with pytest.raises(ConfigError, match="LABELGRID_EVENT_LOOP='tokio'"):
        loop.run(_kind())
    url = f"sqlite:///{tmp_path / 'q.db'}"
    # the child inherits the environment monkeypatch set
    done = labelgrid("queue", "serve", "--address", "127.0.0.1:0", "--database-url", url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "labelgrid: LABELGRID_EVENT_LOOP='tokio' is not one of auto, uvloop, asyncio"
    ]
