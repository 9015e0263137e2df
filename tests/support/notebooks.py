"""Execute notebooks in a real Jupyter kernel (nbclient), as a user's notebook would run."""

from __future__ import annotations

import time
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat
from nbclient import NotebookClient

# How long the client waits on a socket (shell, iopub) before looking again. zmq.asyncio can miss
# the edge-triggered wake-up of a reply that is already in the socket (seen here: the kernel
# idle, its execute_reply unread for the cell's whole 600 s timeout, then found by the
# poll(0) pyzmq does when a poll times out); polling in short waits finds it within this.
SHELL_POLL_SECONDS = 1.0


def _in_short_waits(channel: Any) -> None:
    get_msg = channel.get_msg

    # jupyter_client's signature, called by nbclient with timeout=
    async def get_msg_in_short_waits(timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                return await get_msg(
                    SHELL_POLL_SECONDS if left is None else min(SHELL_POLL_SECONDS, left)
                )
            except Empty:
                if left is not None and left <= SHELL_POLL_SECONDS:
                    raise

    channel.get_msg = get_msg_in_short_waits


class _Client(NotebookClient):
    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()
        _in_short_waits(kc.shell_channel)
        _in_short_waits(kc.iopub_channel)
        return kc


def _execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int) -> None:
    _Client(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()


def run(cells: list[str], cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    _execute(nb, cwd, timeout)
    return nb


def run_file(path: Path, cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    _execute(nb, cwd, timeout)
    return nb


def text(cell: nbformat.NotebookNode, stderr: bool = False) -> str:
    """What a cell printed to stdout or returned, as text (stderr too if asked: library
    warnings land there, and whether a kernel shows one is not ours to assert)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and (stderr or out.get("name") == "stdout"):
            parts.append(out["text"])
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "".join(parts)
