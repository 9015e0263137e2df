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
.encode(rows)` makes the bytes.

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
"auto"`) that is the majority when the project's overlap is above 1, and none otherwise.
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

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from labelgrid.extras import require

if TYPE_CHECKING:
    from labelgrid.client import QueueClient
    from labelgrid_proto.v1 import queue_pb2

FORMATS = ("csv", "jsonl", "parquet")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
CONSENSUS = ("auto", "none", "majority", "dawid_skene")
COLUMNS = ("item_id", "annotation_id", "worker_id", "labels", "created_at", "metadata")
CONSENSUS_COLUMNS = ("consensus", "consensus_confidence")
#: rows per Parquet row group: what the Parquet writer holds at most
ROW_GROUP = 65_536


@dataclass(frozen=True, slots=True)
class Row:
    """One exported annotation, with its item's metadata and consensus."""

    item_id: int
    annotation_id: int
    worker_id: str
    labels: list[str]
    created_at: datetime
    metadata: str | None = None
    consensus: list[str] | None = None
    consensus_confidence: float | None = None


def method_for(project: queue_pb2.Project, consensus: str | None) -> str | None:
    """The consensus method an export uses: "auto" is the majority when the project's
    overlap is above 1, and none otherwise; None or "none" is none."""
    if consensus not in (*CONSENSUS, None):
        raise ValueError(f"unknown consensus {consensus!r}; use one of {', '.join(CONSENSUS)}")
    if consensus == "auto":
        return "majority" if project.overlap > 1 else None
    return None if consensus in (None, "none") else consensus


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


def join(
    annotations: Iterable[list[queue_pb2.LabelledItem]],
    consensus: Iterable[list[queue_pb2.LabelledItem]] | None = None,
) -> Iterator[list[Row]]:
    """Merge ExportLabels chunks (`by_item`) with the consensus chunks of the same project
    (`by_item` and a consensus method), both ordered by item id: one list of Rows per
    chunk of annotations. Independent of the transport (gRPC here; any source of the
    contract's messages in that order)."""
    decided = _flat(consensus if consensus is not None else ())
    current = next(decided, None)
    for chunk in annotations:
        out = []
        for a in chunk:
            while current is not None and current.item_id < a.item_id:
                current = next(decided, None)
            found = current if current is not None and current.item_id == a.item_id else None
            out.append(
                Row(
                    a.item_id,
                    a.annotation_id,
                    a.worker_id,
                    list(a.labels),
                    a.created_at.ToDatetime(tzinfo=UTC),
                    a.metadata_json or None,
                    list(found.labels) if found is not None else None,
                    found.confidence if found is not None else None,
                )
            )
        yield out


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
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        require("export", "a Parquet export")


class Encoder:
    """Rows to the bytes of one export file, chunk by chunk (`encode`); `written` counts the
    rows encoded so far. Transport-free: feed it `join(...)` from any source."""

    def __init__(self, fmt: str, project: queue_pb2.Project, *, with_consensus: bool) -> None:
        check_format(fmt)
        self.fmt = fmt
        self.project = project.name
        self.multi_label = project.multi_label
        self.with_consensus = with_consensus
        self.columns = COLUMNS + (CONSENSUS_COLUMNS if with_consensus else ())
        self.written = 0

    def encode(self, parts: Iterable[list[Row]]) -> Iterator[bytes]:
        encode = {"csv": self._csv, "jsonl": self._jsonl, "parquet": self._parquet}[self.fmt]
        return encode(self._counted(parts))

    def _counted(self, parts: Iterable[list[Row]]) -> Iterator[list[Row]]:
        for part in parts:
            self.written += len(part)
            yield part

    # -- CSV: RFC 4180 (quoted where needed, CRLF line ends), UTF-8 ---------------------------

    def _csv(self, parts: Iterable[list[Row]]) -> Iterator[bytes]:
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(self.columns)
        labels = _json_text if self.multi_label else _single
        with_consensus = self.with_consensus
        for part in parts:
            for r in part:
                line = [
                    r.item_id,
                    r.annotation_id,
                    r.worker_id,
                    labels(r.labels),
                    iso(r.created_at),
                    r.metadata or "",
                ]
                if with_consensus:
                    line.append("" if r.consensus is None else labels(r.consensus))
                    line.append("" if r.consensus_confidence is None else r.consensus_confidence)
                out.writerow(line)
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode("utf-8")

    # -- JSON lines: one object per row, UTF-8 ----------------------------------------------

    def _jsonl(self, parts: Iterable[list[Row]]) -> Iterator[bytes]:
        with_consensus = self.with_consensus
        for part in parts:
            lines = []
            for r in part:
                obj: dict[str, Any] = {
                    "item_id": r.item_id,
                    "annotation_id": r.annotation_id,
                    "worker_id": r.worker_id,
                    "labels": r.labels,
                    "created_at": iso(r.created_at),
                    "metadata": None if r.metadata is None else json.loads(r.metadata),
                }
                if with_consensus:
                    obj["consensus"] = r.consensus
                    obj["consensus_confidence"] = r.consensus_confidence
                lines.append(json.dumps(obj, ensure_ascii=False))
            if lines:
                yield ("\n".join(lines) + "\n").encode("utf-8")

    # -- Parquet: one row group per ROW_GROUP rows ------------------------------------------

    def _parquet(self, parts: Iterable[list[Row]]) -> Iterator[bytes]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = [
            pa.field("item_id", pa.int64(), nullable=False),
            pa.field("annotation_id", pa.int64(), nullable=False),
            pa.field("worker_id", pa.string(), nullable=False),
            pa.field("labels", pa.list_(pa.string()), nullable=False),
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("metadata", pa.string()),
        ]
        if self.with_consensus:
            fields += [
                pa.field("consensus", pa.list_(pa.string())),
                pa.field("consensus_confidence", pa.float64()),
            ]
        schema = pa.schema(fields, metadata={"labelgrid.project": self.project})
        sink = _Sink()
        # each reply becomes Arrow columns at once (the Python rows are dropped); a row
        # group is written, and its bytes handed on, as soon as ROW_GROUP rows are pending
        pending: list[Any] = []
        count = 0
        with pq.ParquetWriter(sink, schema) as writer:
            for part in parts:
                if not part:
                    continue
                pending.append(_batch(part, schema))
                count += len(part)
                while count >= ROW_GROUP:
                    table = pa.Table.from_batches(pending, schema)
                    writer.write_table(table.slice(0, ROW_GROUP), row_group_size=ROW_GROUP)
                    pending = table.slice(ROW_GROUP).to_batches()
                    count -= ROW_GROUP
                    yield sink.take()
            if count:
                table = pa.Table.from_batches(pending, schema)
                writer.write_table(table, row_group_size=ROW_GROUP)
        yield sink.take()


def _batch(group: list[Row], schema: Any) -> Any:
    import pyarrow as pa

    columns = {
        "item_id": [r.item_id for r in group],
        "annotation_id": [r.annotation_id for r in group],
        "worker_id": [r.worker_id for r in group],
        "labels": [r.labels for r in group],
        "created_at": [r.created_at for r in group],
        "metadata": [r.metadata for r in group],
    }
    if "consensus" in schema.names:
        columns["consensus"] = [r.consensus for r in group]
        columns["consensus_confidence"] = [r.consensus_confidence for r in group]
    return pa.RecordBatch.from_pydict(columns, schema=schema)


class _Sink:
    """A write-only file for ParquetWriter that hands over what was written so far."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.parts.append(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def iso(when: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a Z: 2026-01-05T09:30:00.123456Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _flat(parts: Iterable[list[Any]]) -> Iterator[Any]:
    for part in parts:
        yield from part


def _json_text(labels: list[str]) -> str:
    return json.dumps(labels, ensure_ascii=False)


def _single(labels: list[str]) -> str:
    return labels[0] if labels else ""
