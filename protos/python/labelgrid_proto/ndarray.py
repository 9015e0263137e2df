"""The NDArray codec: numpy arrays to and from `labelgrid.v1.NDArray`, exactly or not at all.

Arrays travel as raw little-endian C-order bytes with numpy's dtype string, so a round trip
keeps both the values and the dtype (superintendent's JSON lost both). Anything the contract
cannot carry exactly is refused with `ArrayCodecError` rather than coerced.

The one hand-written module of the contract package: the encoding rules of `NDArray`
(protos/README.md) are part of the contract, and both the queue service and every Python
client need them, so they sit at the bottom of the layers beside the generated messages.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from labelgrid_proto.v1 import arrays_pb2

#: dtype kinds the contract carries: bool, signed and unsigned ints, floats, complex.
SUPPORTED_KINDS = frozenset("biufc")
MAX_NDIM = 32
MAX_DIM = 2**31 - 1


class ArrayCodecError(ValueError):
    """The array or message cannot be carried exactly by the contract."""


def _wire_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind not in SUPPORTED_KINDS or dtype.fields is not None or dtype.subdtype:
        raise ArrayCodecError(
            f"dtype {dtype.str!r} ({dtype}) is not supported; use bool, int8..int64, "
            "uint8..uint64, float16/32/64 or complex64/128"
        )
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


def encode(array: np.ndarray | np.generic) -> arrays_pb2.NDArray:
    """Encode an array (or a numpy scalar, as a 0-d array) as little-endian C-order bytes."""
    arr = np.asarray(array)
    wire = _wire_dtype(arr.dtype)
    arr = np.asarray(arr, dtype=wire, order="C")
    return arrays_pb2.NDArray(dtype=wire.str, shape=list(arr.shape), data=arr.tobytes())


@functools.lru_cache(maxsize=256)
def parse_dtype(text: str) -> np.dtype:
    """Parse a wire dtype string, refusing big-endian and unsupported kinds."""
    if not text:
        raise ArrayCodecError("dtype is empty; give numpy's string form, e.g. '<f4' or '|u1'")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError) as exc:
        raise ArrayCodecError(f"dtype {text!r} is not understood: {exc}") from None
    if text.startswith(">") and dtype.itemsize > 1:
        raise ArrayCodecError(f"dtype {text!r} is big-endian; the contract is little-endian")
    return _wire_dtype(dtype)


def check_shape(shape: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) > MAX_NDIM:
        raise ArrayCodecError(f"shape has {len(shape)} dimensions; at most {MAX_NDIM}")
    if any(d < 0 for d in shape):
        raise ArrayCodecError(f"shape {list(shape)} has a negative dimension")
    if any(d > MAX_DIM for d in shape):
        # numpy cannot hold such a dimension even when another one is 0
        raise ArrayCodecError(f"shape {list(shape)} has a dimension over {MAX_DIM}")
    return tuple(int(d) for d in shape)


def check(message: arrays_pb2.NDArray) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and shape of an NDArray message, once its bytes are known to match them
    exactly; what the server validates with and what `decode` decodes with."""
    dtype = parse_dtype(message.dtype)
    shape = check_shape(message.shape)
    expected = dtype.itemsize * math.prod(shape)
    if len(message.data) != expected:
        raise ArrayCodecError(
            f"len(data) is {len(message.data)} bytes but dtype {dtype.str} x shape "
            f"{list(shape)} needs {expected}"
        )
    return dtype, shape


def decode(message: arrays_pb2.NDArray) -> np.ndarray:
    """Decode an NDArray message, checking that the bytes match dtype x shape exactly."""
    dtype, shape = check(message)
    return np.frombuffer(message.data, dtype=dtype).reshape(shape)
