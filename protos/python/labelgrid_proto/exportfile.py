"""The export files of a project's labels (CSV, JSON lines, Parquet), encoded from
`ExportLabels` replies: transport-free, so the thin client (`labelgrid export`) and the
queue service's web app (the owner's download) write the very same bytes.

The other hand-written module of the contract package (beside the NDArray codec): an
export file's columns and encodings are part of what labelgrid promises, and both sides need
them, so they sit at the bottom of the layers. Columns, orders and memory use:
clients/python/labelgrid/export.py. Parquet needs pyarrow (imported only when a Parquet
file is written).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


def several_labels(project: queue_pb2.Project) -> bool:
    """Whether the project's items may get more than one label (overlap above 1, or
    max_overlap for more on request): what an "auto" consensus keys on, in exports, the
    trainer and the widgets alike."""
    return max(project.overlap, project.max_overlap) > 1


def method_for(project: queue_pb2.Project, consensus: str | None) -> str | None:
    """The consensus method an export uses: "auto" is the majority when the project's
    items may get several labels (overlap or max_overlap above 1), and none otherwise;
    None or "none" is none."""
    if consensus not in (*CONSENSUS, None):
        raise ValueError(f"unknown consensus {consensus!r}; use one of {', '.join(CONSENSUS)}")
    if consensus == "auto":
        return "majority" if several_labels(project) else None
    return None if consensus in (None, "none") else consensus


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
            out.append(_row(a, current))
        yield out


async def join_async(
    annotations: AsyncIterable[list[queue_pb2.LabelledItem]],
    consensus: AsyncIterable[list[queue_pb2.LabelledItem]] | None = None,
) -> AsyncIterator[list[Row]]:
    """`join` over async streams (e.g. the queue service's own ExportLabels handler)."""
    decided = _flat_async(consensus) if consensus is not None else None
    current = await anext(decided, None) if decided is not None else None
    async for chunk in annotations:
        out = []
        for a in chunk:
            while decided is not None and current is not None and current.item_id < a.item_id:
                current = await anext(decided, None)
            out.append(_row(a, current))
        yield out


def _row(a: queue_pb2.LabelledItem, current: queue_pb2.LabelledItem | None) -> Row:
    found = current if current is not None and current.item_id == a.item_id else None
    return Row(
        a.item_id,
        a.annotation_id,
        a.worker_id,
        list(a.labels),
        a.created_at.ToDatetime(tzinfo=UTC),
        a.metadata_json or None,
        list(found.labels) if found is not None else None,
        found.confidence if found is not None else None,
    )


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


class Encoder:
    """Rows to the bytes of one export file, piece by piece: `begin()`, then `add(rows)` for
    each list of rows, then `end()`, each returning the next bytes of the file (maybe
    none); `encode(parts)` does all three over an iterable. `written` counts the rows."""

    def __init__(self, fmt: str, project: queue_pb2.Project, *, with_consensus: bool) -> None:
        check_format(fmt)
        self.fmt = fmt
        self.project = project.name
        self.multi_label = project.multi_label
        self.with_consensus = with_consensus
        self.columns = COLUMNS + (CONSENSUS_COLUMNS if with_consensus else ())
        self.written = 0
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer)
        self._parquet: _Parquet | None = None

    def encode(self, parts: Iterable[list[Row]]) -> Iterator[bytes]:
        yield from _some(self.begin())
        for part in parts:
            yield from _some(self.add(part))
        yield from _some(self.end())

    def begin(self) -> bytes:
        if self.fmt == "csv":  # the header goes out with the first rows (or at the end)
            self._csv.writerow(self.columns)
        if self.fmt == "parquet":
            self._parquet = _Parquet(self.project, self.with_consensus)
        return b""

    def add(self, part: list[Row]) -> bytes:
        self.written += len(part)
        if self.fmt == "csv":
            return self._add_csv(part)
        if self.fmt == "jsonl":
            return self._add_jsonl(part)
        assert self._parquet is not None, "begin() first"
        return self._parquet.add(part)

    def end(self) -> bytes:
        if self._parquet is not None:
            return self._parquet.end()
        return self._take() if self.fmt == "csv" else b""

    def _take(self) -> bytes:
        data = self._buffer.getvalue().encode("utf-8")
        self._buffer.seek(0)
        self._buffer.truncate()
        return data

    # -- CSV: RFC 4180 (quoted where needed, CRLF line ends), UTF-8 ---------------------------

    def _add_csv(self, part: list[Row]) -> bytes:
        labels = _json_text if self.multi_label else _single
        out = self._csv
        for r in part:
            line = [
                r.item_id,
                r.annotation_id,
                r.worker_id,
                labels(r.labels),
                iso(r.created_at),
                r.metadata or "",
            ]
            if self.with_consensus:
                line.append("" if r.consensus is None else labels(r.consensus))
                line.append("" if r.consensus_confidence is None else r.consensus_confidence)
            out.writerow(line)
        return self._take()

    # -- JSON lines: one object per row, UTF-8 ----------------------------------------------

    def _add_jsonl(self, part: list[Row]) -> bytes:
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
            if self.with_consensus:
                obj["consensus"] = r.consensus
                obj["consensus_confidence"] = r.consensus_confidence
            lines.append(json.dumps(obj, ensure_ascii=False))
        return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


class _Parquet:
    """Parquet through pyarrow's ParquetWriter, one row group per ROW_GROUP rows: each list
    of rows becomes Arrow columns at once (the Python rows are dropped), and a row group is
    written, and its bytes handed on, as soon as ROW_GROUP rows are pending."""

    def __init__(self, project: str, with_consensus: bool) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        fields = [
            pa.field("item_id", pa.int64(), nullable=False),
            pa.field("annotation_id", pa.int64(), nullable=False),
            pa.field("worker_id", pa.string(), nullable=False),
            pa.field("labels", pa.list_(pa.string()), nullable=False),
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("metadata", pa.string()),
        ]
        if with_consensus:
            fields += [
                pa.field("consensus", pa.list_(pa.string())),
                pa.field("consensus_confidence", pa.float64()),
            ]
        self.schema = pa.schema(fields, metadata={"labelgrid.project": project})
        self.sink = _Sink()
        self.writer = pq.ParquetWriter(self.sink, self.schema)
        self.pending: list[Any] = []
        self.count = 0

    def add(self, part: list[Row]) -> bytes:
        if not part:
            return b""
        pa = self.pa
        self.pending.append(_batch(part, self.schema))
        self.count += len(part)
        while self.count >= ROW_GROUP:
            table = pa.Table.from_batches(self.pending, self.schema)
            self.writer.write_table(table.slice(0, ROW_GROUP), row_group_size=ROW_GROUP)
            self.pending = table.slice(ROW_GROUP).to_batches()
            self.count -= ROW_GROUP
        return self.sink.take()

    def end(self) -> bytes:
        if self.count:
            table = self.pa.Table.from_batches(self.pending, self.schema)
            self.writer.write_table(table, row_group_size=ROW_GROUP)
            self.pending, self.count = [], 0
        self.writer.close()
        return self.sink.take()


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


async def _flat_async(parts: AsyncIterable[list[Any]]) -> AsyncIterator[Any]:
    async for part in parts:
        for one in part:
            yield one


def _some(data: bytes) -> Iterator[bytes]:
    if data:
        yield data


def _json_text(labels: list[str]) -> str:
    return json.dumps(labels, ensure_ascii=False)


def _single(labels: list[str]) -> str:
    return labels[0] if labels else ""
