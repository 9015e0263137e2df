"""Execute notebooks in a real Jupyter kernel (nbclient), as a user's notebook would run."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(cells: list[str], cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def run_file(path: Path, cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
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
