"""The event loop both servers run on: uvloop where it is installed (the `queue` and
`trainer` extras bring it on Linux and macOS), asyncio's own otherwise.

Serving a crowd's pages is mostly sockets: the HTTP requests, the progress streams and the
round trips to PostgreSQL. uvloop runs that part of the loop in C (libuv); with it the queue
service spends less CPU per label (bench/crowd.py, the README's crowd figures).
LABELGRID_EVENT_LOOP=asyncio keeps asyncio's loop (for a debugger, or to rule uvloop out).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from labelgrid_serving.security import ConfigError

T = TypeVar("T")
CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default; LABELGRID_EVENT_LOOP decides
    (`auto`, the default: uvloop when it imports)."""
    choice = os.environ.get("LABELGRID_EVENT_LOOP", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ConfigError(f"LABELGRID_EVENT_LOOP={choice!r} is not one of {', '.join(CHOICES)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "LABELGRID_EVENT_LOOP=uvloop but uvloop is not installed: "
                "pip install 'labelgrid[queue]'"
            ) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on the loop `loop_factory` picks."""
    try:
        factory = loop_factory()
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
