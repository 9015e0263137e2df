"""The code cells of superintendent's distributed-labelling page, read from the page itself."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COPY = ROOT / "tests" / "data" / "seed-distributing-labelling.md"
SHARED = ROOT.parent / "shared" / "seed" / "distributing-labelling.md"


def _is_code(paragraph: str) -> bool:
    first = paragraph.lstrip()[:1]
    if not first or not (first.islower() or first == "_"):
        return False  # outputs (500, {...}, ['0', ...], VBox(…), Score: …) and prose
    try:
        compile(paragraph, "<cell>", "exec")
    except SyntaxError:
        return False
    return True


def cells(text: str | None = None) -> list[str]:
    """Each `In [n]:` cell's code: the paragraphs after the marker that are code."""
    text = text if text is not None else COPY.read_text()
    chunks = re.split(r"^In \[[^\]]*\]:\s*$", text, flags=re.M)[1:]
    out = []
    for chunk in chunks:
        code: list[str] = []
        for paragraph in re.split(r"\n\s*\n", chunk.strip("\n")):
            if not _is_code(paragraph):
                break
            code.append(paragraph)
        out.append("\n\n".join(code))
    return out
