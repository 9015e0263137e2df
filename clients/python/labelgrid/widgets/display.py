"""How an item's input is shown: images, text, tables, or a user's display_func."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from IPython.display import HTML, Image, display


def to_uint8_image(value: Any) -> np.ndarray:
    """2-d arrays, flattened square images, HxWx3/4 arrays and image files as uint8 pixels."""
    if isinstance(value, str | os.PathLike):
        from PIL import Image as PILImage

        return np.asarray(PILImage.open(value))
    arr = np.asarray(value)
    if arr.ndim == 1:
        side = math.isqrt(arr.size)
        if side * side != arr.size:
            raise ValueError(f"a flat image of {arr.size} values is not square")
        arr = arr.reshape(side, side)
    if arr.dtype != np.uint8:
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.nan_to_num((arr - lo) * scale).astype(np.uint8)
    return arr


def png_bytes(value: Any, size: tuple[int, int] = (100, 100)) -> bytes:
    from PIL import Image as PILImage

    pixels = to_uint8_image(value)
    image = PILImage.fromarray(pixels)
    image = image.resize(size, PILImage.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def image_display(size: tuple[int, int] = (100, 100)):
    def show(value: Any) -> None:
        display(Image(data=png_bytes(value, size), format="png"))

    return show


def default_display(value: Any) -> None:
    """Text as text, dicts as a small table, arrays as an image when they look like one."""
    if isinstance(value, str):
        display(HTML(f"<div style='font-size:1.2em'>{_escape(value)}</div>"))
    elif isinstance(value, dict):
        rows = "".join(
            f"<tr><th>{_escape(str(k))}</th><td>{_escape(str(v))}</td></tr>"
            for k, v in value.items()
        )
        display(HTML(f"<table>{rows}</table>"))
    elif isinstance(value, np.ndarray) and value.ndim in (2, 3):
        display(Image(data=png_bytes(value, (200, 200)), format="png"))
    else:
        display(value)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def others_html(others: Sequence[tuple[str, Sequence[str]]]) -> str:
    """What the other annotators said, shown to a reviewer adjudicating the item."""
    rows = "".join(
        f"<li><b>{_escape(worker)}</b>: {_escape(', '.join(labels) or '(no label)')}</li>"
        for worker, labels in others
    )
    return (
        "<div class='labelgrid-others'><i>In review: the annotators disagreed. "
        f"They said:</i><ul>{rows}</ul>Your label decides.</div>"
    )
