"""The array codec: exact round trips for every supported dtype, refusals for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from labelgrid import arrays, payloads
from tests.support.dtypes import DTYPES


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
def test_round_trip_keeps_values_and_dtype(dtype, shape) -> None:
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(shape) * 100).astype(dtype)
    back = arrays.decode(arrays.encode(a))
    assert back.dtype == a.dtype and back.shape == a.shape
    assert back.tobytes() == a.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_scalars_stay_scalars_of_their_dtype(dtype) -> None:
    value = dtype(1)
    back = payloads.from_payload(payloads.to_payload(value))
    assert back.shape == () and back.dtype == np.dtype(dtype) and back == value


def test_big_endian_and_fortran_order_are_normalised() -> None:
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    msg = arrays.encode(a)
    assert msg.dtype == "<i4"
    np.testing.assert_array_equal(arrays.decode(msg), a)
    f = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    np.testing.assert_array_equal(arrays.decode(arrays.encode(f)), f)


@pytest.mark.parametrize(
    "value",
    [
        np.array(["a"]),
        np.array([object()]),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
        np.zeros(2, dtype=[("a", "<i4")]),
    ],
)
def test_unsupported_arrays_are_refused(value) -> None:
    with pytest.raises(arrays.ArrayCodecError):
        arrays.encode(value)


def test_payload_kinds(tmp_path) -> None:
    assert payloads.from_payload(payloads.to_payload("héllo ✓")) == "héllo ✓"
    assert payloads.from_payload(payloads.to_payload(tmp_path)) == str(tmp_path)
    assert payloads.from_payload(payloads.to_payload({"a": [1, 2.5, None]})) == {
        "a": [1, 2.5, None]
    }
    with pytest.raises(payloads.PayloadError):
        payloads.to_payload({1, 2})
    with pytest.raises(payloads.PayloadError):
        payloads.to_payload(float("nan"))
