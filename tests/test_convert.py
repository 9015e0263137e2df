"""Stored rows into replies (queue_service/convert.py), checked by reading them back: what a
labeller is handed is what was added."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from labelgrid_proto.v1 import queue_pb2
from queue_service import convert
from queue_service.store.rows import InputRow, ItemRow


@pytest.mark.parametrize(
    "new",
    [
        queue_pb2.NewItem(input={"text": "a cat"}, metadata_json='{"k": 1}'),
        queue_pb2.NewItem(input={"text": ""}),
        queue_pb2.NewItem(input={"uri": "https://example.org/1.png"}),
        queue_pb2.NewItem(input={"json": '{"a": [1, 2]}'}),
        queue_pb2.NewItem(
            input={
                "array": {
                    "dtype": "<f4",
                    "shape": [2, 3],
                    "data": np.arange(6, dtype="<f4").tobytes(),
                }
            }
        ),
        queue_pb2.NewItem(input={"array": {"dtype": "<i8", "shape": [], "data": bytes(8)}}),
    ],
)
def test_an_item_is_handed_out_as_it_was_added(new: queue_pb2.NewItem) -> None:
    row = convert.input_row(new, "item 0")
    sent = convert.item(ItemRow(7, row, 0.5, "tok", 1_732_600_000.25))
    assert sent.input == new.input and sent.input.WhichOneof("kind") == new.input.WhichOneof("kind")
    assert sent.metadata_json == new.metadata_json
    assert (sent.id, sent.lease_token, sent.priority) == (7, "tok", 0.5)
    assert abs(sent.lease_expires_at.ToNanoseconds() - 1_732_600_000_250_000_000) < 1_000
    again = queue_pb2.NewItem(input=sent.input, metadata_json=sent.metadata_json)
    assert convert.input_row(again, "again") == row


def test_an_empty_array_is_still_an_array() -> None:
    sent = convert.item(ItemRow(1, InputRow(convert.KIND_ARRAY), 0.0, "t", None))
    assert sent.input.WhichOneof("kind") == "array" and not sent.HasField("lease_expires_at")
    # an item whose input row is missing (an export's outer join): an input, empty
    sent = convert.item(ItemRow(1, InputRow(convert.KIND_TEXT), 0.0, "t", None))
    assert sent.HasField("input") and sent.input.WhichOneof("kind") is None


@pytest.mark.parametrize("seconds", [0.0, 1.5, -1.25, 1_732_600_000.123456, 4e9 + 0.999999999])
def test_timestamps_as_protobuf_makes_them(seconds: float) -> None:
    expected = Timestamp()
    expected.FromNanoseconds(round(seconds * 1e9))
    assert convert.timestamp(seconds) == expected
