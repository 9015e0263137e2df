"""Python values to and from `labelgrid.v1.Payload`: arrays, text, URIs/paths, small JSON."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from labelgrid import arrays
from labelgrid_proto.v1 import arrays_pb2


class PayloadError(ValueError):
    """The value cannot be stored exactly as an item input."""


def to_payload(value: Any) -> arrays_pb2.Payload:
    """Pick the payload kind for a value; numpy scalars become 0-d arrays (dtype kept)."""
    if isinstance(value, arrays_pb2.Payload):
        return value
    if isinstance(value, np.ndarray | np.generic):
        return arrays_pb2.Payload(array=arrays.encode(value))
    if isinstance(value, str):
        return arrays_pb2.Payload(text=value)
    if isinstance(value, os.PathLike):
        return arrays_pb2.Payload(uri=os.fspath(value))
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(
            f"cannot store a {type(value).__name__} exactly: {exc}; pass a numpy array, "
            "text, a path, or a JSON-able value"
        ) from None
    return arrays_pb2.Payload(json=text)


def from_payload(payload: arrays_pb2.Payload) -> Any:
    """The Python value of a payload: ndarray, str, str (URI) or the JSON value."""
    kind = payload.WhichOneof("kind")
    if kind == "array":
        return arrays.decode(payload.array)
    if kind == "text":
        return payload.text
    if kind == "uri":
        return payload.uri
    if kind == "json":
        return json.loads(payload.json)
    return None
