"""The store's value types: what its methods take and return, free of any SQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from queue_service.schema import KIND_ARRAY


@dataclass(frozen=True)
class ProjectRow:
    id: int
    name: str
    options: tuple[str, ...]
    multi_label: bool
    allow_other: bool
    lease_seconds: int
    model_version: int
    created_at: float
    overlap: int = 1
    max_overlap: int = 1
    review_threshold: float = 0.0
    reviewers: tuple[str, ...] = ()
    # markdown for labellers; editable, so not one of the settings compared by exist_ok
    instructions: str = ""
    # annotator-aware routing: workers estimated less reliable get extra rounds last (0 off)
    reliability_cut: float = 0.0

    @property
    def shared(self) -> bool:
        """Several annotations per item, now (overlap > 1) or on request (max_overlap > 1:
        a disagreement or a model's relabel request asks one more): leases live in
        `assignments`, not on the item, so no worker labels an item twice."""
        return self.overlap > 1 or self.max_overlap > 1

    @property
    def single_first(self) -> bool:
        """One label per item first, more only on request (overlap 1, max_overlap > 1): a
        shared project that serves labellers like an overlap-1 one (a worker who skipped an
        item or let its lease expire may be given it again; only a worker who labelled it
        never is)."""
        return self.overlap == 1 and self.max_overlap > 1

    def settings(self) -> tuple:
        return (
            self.options,
            self.multi_label,
            self.allow_other,
            self.lease_seconds,
            self.overlap,
            self.max_overlap,
            self.review_threshold,
            self.reviewers,
            self.reliability_cut,
        )


@dataclass(slots=True)
class InputRow:
    """One item's input as stored: an array (dtype, shape, data) or a text-like value."""

    kind: int
    dtype: str | None = None
    shape: str | None = None
    data: bytes | None = None
    text: str | None = None
    metadata: str | None = None


def input_row(row: sa.Row) -> InputRow:
    """An input from a result row that selected kind, dtype, shape, data, text, metadata."""
    return InputRow(row.kind, row.dtype, row.shape, row.data, row.text, row.metadata)


@dataclass(frozen=True, slots=True)
class RowBlock:
    """n array items of one dtype and shape in one buffer: the bulk AddFeatures case, kept
    whole so a 100,000-row call never becomes 100,000 Python objects."""

    dtype: str
    shape: str
    data: memoryview | bytes
    n: int
    stride: int

    def rows(self) -> list[InputRow]:
        data = memoryview(self.data)
        step = self.stride
        return [
            InputRow(KIND_ARRAY, self.dtype, self.shape, data[i * step : (i + 1) * step])
            for i in range(self.n)
        ]


def input_records(ids: list[int], inputs: Sequence[InputRow | RowBlock]) -> Iterator[tuple]:
    """item_inputs records; blocks are sliced without a Python object per row."""
    at = 0
    for seg in inputs:
        if isinstance(seg, RowBlock):
            data, step = memoryview(seg.data), seg.stride
            for k in range(seg.n):
                row = data[k * step : (k + 1) * step]
                yield (ids[at + k], KIND_ARRAY, seg.dtype, seg.shape, row, None, None)
            at += seg.n
        else:
            yield (ids[at], seg.kind, seg.dtype, seg.shape, seg.data, seg.text, seg.metadata)
            at += 1


@dataclass(frozen=True)
class ItemRow:
    id: int
    input: InputRow | None
    priority: float
    lease_token: str | None = None
    lease_expires_at: float | None = None
    # (worker, labels) of the other annotators, for an adjudicator
    others: tuple[tuple[str, list[str]], ...] = ()


@dataclass(frozen=True)
class AnnotationRow:
    id: int
    item_id: int
    labels: list[str]
    worker_id: str
    created_at: float
    input: InputRow | None
    confidence: float = 1.0
    # the item's metadata (JSON text), read by the by-item export only
    metadata: str | None = None


@dataclass(frozen=True)
class SubmitResult:
    annotation_id: int
    duplicate: bool
    next_item: ItemRow | None


@dataclass(frozen=True, slots=True)
class VoteRow:
    id: int
    item_id: int
    worker_id: str
    labels: tuple[str, ...]
    kind: int
    created_at: float
    item_done: bool


@dataclass
class ProgressRow:
    total: int = 0
    labelled: int = 0
    leased: int = 0
    available: int = 0
    workers: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    last_annotation_id: int = 0
    annotations: int = 0
    in_review: int = 0
    worker_stats: list = field(default_factory=list)
    last_training_run_id: int = 0


@dataclass(frozen=True, slots=True)
class PackedRows:
    """A chunk of unlabelled array items of one dtype and shape, packed by the database: the
    ids in order, their priorities, and their input bytes concatenated in the same order."""

    ids: list[int]
    priorities: list[float]
    dtype: str
    shape: str
    data: bytes


@dataclass
class TrainingRunRow:
    status: str
    message: str
    score: float | None
    score_std: float | None
    n_labels: int
    n_scored: int
    model_version: int
    seconds: float
    started_at: float
    trainer: str
    #: [(phase name, seconds), ...] in order; empty for runs recorded without them
    phases: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class WorkerActivityRow:
    """One worker's labelling: counts and times from one aggregate over their annotations."""

    worker_id: str
    labels: int
    first_at: float
    last_at: float
    active_seconds: float
    active_gaps: int
    compared: int = 0
    agreed: int = 0


@dataclass
class ProjectStatsRow:
    workers: list[WorkerActivityRow]
    # (bucket start in seconds since the epoch, labels)
    buckets: list[tuple[float, int]]
    bucket_seconds: int
