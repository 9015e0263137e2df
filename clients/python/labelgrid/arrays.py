"""The NDArray codec (`labelgrid_proto.ndarray`), under the name the client has always used."""

from labelgrid_proto.ndarray import (
    MAX_DIM,
    MAX_NDIM,
    SUPPORTED_KINDS,
    ArrayCodecError,
    check,
    check_shape,
    decode,
    encode,
    parse_dtype,
)

__all__ = [
    "MAX_DIM",
    "MAX_NDIM",
    "SUPPORTED_KINDS",
    "ArrayCodecError",
    "check",
    "check_shape",
    "decode",
    "encode",
    "parse_dtype",
]
