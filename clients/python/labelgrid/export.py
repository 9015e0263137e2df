"""A project's labels as CSV, JSON lines or Parquet, streamed from the queue service.

    labelgrid export birds --server 127.0.0.1:50051 --format csv --output birds.csv

or from Python (the web app's owner view serves the same bytes over HTTP):

    from labelgrid import QueueClient, export

    with QueueClient("127.0.0.1:50051") as client, open("birds.parquet", "wb") as f:
        export.write(client, "birds", "parquet", f)
    # an HTTP response body, chunk by chunk:
    body = export.chunks(client, "birds", "csv")  # Iterator[bytes]
    headers = {"Content-Type": export.CONTENT_TYPES["csv"]}

Code without a QueueClient (e.g. a handler beside the queue service with the contract's
messages at hand) can use the pieces: `join(annotation_chunks, consensus_chunks)` makes
Rows from ExportLabels replies (`by_item`), and `Encoder(fmt, project, with_consensus=...)
.encode(rows)` makes the bytes. They live in the contract package
(`labelgrid_proto.exportfile`), so the queue service's web app, which must not import this
client, writes the very same bytes for the owner's download buttons.

**Rows and columns.** One row per annotation, ordered by item id, then annotation id:

| column | CSV | JSON lines | Parquet |
|---|---|---|---|
| `item_id`, `annotation_id` | integer | integer | int64 |
| `worker_id` | text | string | string |
| `labels` | the label; a JSON list in a multi-label project | list of strings | list<string> |
| `created_at` | ISO 8601 UTC, e.g. `2026-01-05T09:30:00.123456Z` | the same | timestamp[us, UTC] |
| `metadata` | the item's metadata, JSON text; empty if none | object or null | string (JSON) |
| `consensus` | like `labels`; empty if the item is not done | list or null | list<string> |
| `consensus_confidence` | float; empty if none | float or null | float64 |

(Parquet's `metadata`, `consensus` and `consensus_confidence` are null where CSV is empty.)

The consensus columns are there when a consensus is asked for; by default (`consensus=
"auto"`) that is the majority when the project's overlap (or max_overlap, for more labels on
request) is above 1, and none otherwise.
They carry the consensus of the row's item (the same on each of its annotations), for the
items whose labels are all in; items still waiting for labels have none. Imported labels
appear under the worker `(import)`. Item inputs (the arrays, texts, URIs) are not exported:
an export is the labels; read the inputs with `QueueClient.stream_unlabelled`/`pop`.

**Memory stays flat.** Nothing here holds all the rows. The join of annotations with their
item's consensus is a merge of two streams in the same order: the annotations come from
ExportLabels with `by_item` (ordered by item id, then annotation id), the consensus rows from
a second ExportLabels call with `by_item` and the consensus method (one row per completed
item, ordered by item id); both are read side by side, one reply at a time, the consensus
stream advanced until it reaches each annotation's item. CSV and JSON lines are encoded
reply by reply; Parquet is written through `pyarrow.parquet.ParquetWriter` one row group
(ROW_GROUP rows) at a time. The queue service computes a consensus from every vote of the
project at once (its own memory grows with the annotations when a consensus is asked for);
the two streams are separate reads, so an item completed during the export may lack its
consensus. Measured in `bench/export_memory.py`.

Parquet needs `labelgrid[export]` (pyarrow); a missing extra raises `MissingExtra` with the
install command before anything is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from labelgrid.extras import require
from labelgrid_proto import exportfile
from labelgrid_proto.exportfile import (
    COLUMNS,
    CONSENSUS,
    CONSENSUS_COLUMNS,
    CONTENT_TYPES,
    FORMATS,
    ROW_GROUP,
    Encoder,
    Row,
    iso,
    join,
    method_for,
)

if TYPE_CHECKING:
    from labelgrid.client import QueueClient

__all__ = [
    "COLUMNS",
    "CONSENSUS",
    "CONSENSUS_COLUMNS",
    "CONTENT_TYPES",
    "FORMATS",
    "ROW_GROUP",
    "Encoder",
    "Row",
    "check_format",
    "chunks",
    "iso",
    "join",
    "method_for",
    "rows",
    "write",
]


def rows(
    client: QueueClient, project: str, *, method: str | None = None, chunk_size: int = 0
) -> Iterator[list[Row]]:
    """The project's annotations as Rows, one list per reply of the queue service, joined
    with the item's consensus by `method` ("majority", "dawid_skene"; None for none)."""
    annotations = client.export_chunks(project, by_item=True, chunk_size=chunk_size)
    consensus = (
        client.export_chunks(project, consensus=method, by_item=True, chunk_size=chunk_size)
        if method
        else None
    )
    return join(annotations, consensus)


def chunks(
    client: QueueClient,
    project: str,
    fmt: str,
    *,
    consensus: str | None = "auto",
    chunk_size: int = 0,
) -> Iterator[bytes]:
    """The export file in `fmt` ("csv", "jsonl", "parquet") as byte chunks, produced as the
    rows arrive: the body of an HTTP response (Content-Type: CONTENT_TYPES[fmt]). The
    project is read (and pyarrow checked) before the first chunk."""
    encoder, parts = _start(client, project, fmt, consensus, chunk_size)
    return encoder.encode(parts)


def write(
    client: QueueClient,
    project: str,
    fmt: str,
    fileobj: IO[bytes],
    *,
    consensus: str | None = "auto",
    chunk_size: int = 0,
) -> int:
    """Write the export to a binary file object; return the number of rows written."""
    encoder, parts = _start(client, project, fmt, consensus, chunk_size)
    for data in encoder.encode(parts):
        fileobj.write(data)
    return encoder.written


def _start(
    client: QueueClient, project: str, fmt: str, consensus: str | None, chunk_size: int
) -> tuple[Encoder, Iterator[list[Row]]]:
    check_format(fmt)
    settings = client.get_project(project)
    method = method_for(settings, consensus)
    encoder = Encoder(fmt, settings, with_consensus=method is not None)
    return encoder, rows(client, project, method=method, chunk_size=chunk_size)


def check_format(fmt: str) -> None:
    """ValueError for an unknown format; MissingExtra for Parquet without pyarrow."""
    exportfile.check_format(fmt)
    if fmt == "parquet":
        require("export", "a Parquet export")
