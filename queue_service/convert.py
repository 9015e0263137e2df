"""Protobuf messages to and from store rows, with the validation that needs no database."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Iterable, Iterator

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from labelgrid_proto import ndarray
from labelgrid_proto.v1 import arrays_pb2, queue_pb2
from queue_service import agreement
from queue_service.errors import InvalidArgument
from queue_service.schema import KIND_ARRAY, KIND_JSON, KIND_TEXT, KIND_URI, UNRANKED
from queue_service.store import (
    AnnotationRow,
    InputRow,
    ItemRow,
    PackedRows,
    ProgressRow,
    ProjectRow,
    ProjectStatsRow,
    RowBlock,
    TrainingRunRow,
)


def _shape_text(shape: Iterable[int]) -> str:
    return ",".join(str(d) for d in shape)


def _check_array(message: arrays_pb2.NDArray, where: str) -> tuple[str, tuple[int, ...]]:
    try:
        dtype, shape = ndarray.check(message)
    except ndarray.ArrayCodecError as exc:
        raise InvalidArgument(f"{where}: {exc}") from None
    return dtype.str, shape


def no_nul(text: str, what: str) -> str:
    """Refuse NUL characters: PostgreSQL text cannot hold them (SQLite could), and one
    behaviour on both backends is the contract."""
    if "\x00" in text:
        raise InvalidArgument(f"{what} contains a NUL character (U+0000)")
    return text


def _check_json(text: str, where: str, want_object: bool = False) -> str:
    no_nul(text, where)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{where} is not valid JSON: {exc}") from None
    if want_object and not isinstance(value, dict):
        raise InvalidArgument(f"{where} must be a JSON object")
    return text


def input_row(item: queue_pb2.NewItem, where: str) -> InputRow:
    """Validate one new item's payload and metadata and turn them into a stored row."""
    meta = (
        _check_json(item.metadata_json, f"{where} metadata_json", True)
        if item.metadata_json
        else None
    )
    payload = item.input
    kind = payload.WhichOneof("kind")
    if kind == "array":
        dtype, shape = _check_array(payload.array, where)
        return InputRow(KIND_ARRAY, dtype, _shape_text(shape), payload.array.data, None, meta)
    if kind == "text":
        return InputRow(KIND_TEXT, text=no_nul(payload.text, f"{where} text"), metadata=meta)
    if kind == "uri":
        if not payload.uri:
            raise InvalidArgument(f"{where}: uri is empty")
        return InputRow(KIND_URI, text=no_nul(payload.uri, f"{where} uri"), metadata=meta)
    if kind == "json":
        return InputRow(KIND_JSON, text=_check_json(payload.json, f"{where} json"), metadata=meta)
    raise InvalidArgument(f"{where}: input is empty; set one of array, text, uri or json")


def row_block(rows: arrays_pb2.NDArray, where: str) -> RowBlock:
    """A batched array as one block of items (axis 0), without copying values."""
    dtype, shape = _check_array(rows, where)
    if not shape:
        raise InvalidArgument(f"{where}: rows must have at least one dimension (axis 0 = items)")
    n = shape[0]
    stride = len(rows.data) // n if n else 0
    return RowBlock(dtype, _shape_text(shape[1:]), memoryview(rows.data), n, stride)


def _head(
    kind: int,
    dtype: str | None,
    shape: str | None,
    text: str | None,
    metadata: str | None,
    labels: list[str] | None,
    prio: float,
) -> bytes:
    head = json.dumps([kind, dtype, shape, text, metadata, labels, prio])
    return len(head).to_bytes(8, "little") + head.encode()


@functools.lru_cache(maxsize=4096)
def _array_head(kind: int, dtype: str | None, shape: str | None, prio: float) -> bytes:
    """Plain array rows (the bulk case) share one header per dtype, shape and priority."""
    return _head(kind, dtype, shape, None, None, None, prio)


def digest_block(digest: hashlib._Hash, block: RowBlock) -> None:
    """Feed a block of plain array rows into the digest: the same bytes as feeding each row
    to `digest_update`, built in one numpy pass."""
    head = _array_head(KIND_ARRAY, block.dtype, block.shape, UNRANKED)
    framed = np.empty(
        block.n,
        dtype=np.dtype([("head", f"V{len(head)}"), ("size", "<u8"), ("data", f"V{block.stride}")]),
    )
    framed["head"] = np.frombuffer(head, dtype=f"V{len(head)}")[0]
    framed["size"] = block.stride
    if block.stride:
        framed["data"] = np.frombuffer(block.data, dtype=f"V{block.stride}", count=block.n)
    digest.update(framed.tobytes())


def digest_update(
    digest: hashlib._Hash, row: InputRow, labels: list[str] | None, prio: float
) -> None:
    """Feed one item into the idempotency digest; independent of how the call was chunked."""
    if row.text is None and row.metadata is None and labels is None:
        digest.update(_array_head(row.kind, row.dtype, row.shape, prio))
    else:
        digest.update(_head(row.kind, row.dtype, row.shape, row.text, row.metadata, labels, prio))
    data = row.data or b""
    digest.update(len(data).to_bytes(8, "little"))
    digest.update(data)


def fill_payload(msg: arrays_pb2.Payload, row: InputRow) -> None:
    """Write the row's input into `msg` (a field of the reply: no message built and copied
    in, which was a few per cent of a crowd's CPU on the Submit that hands out the next)."""
    msg.SetInParent()  # present even when empty, as a Payload copied in was
    if row.kind == KIND_ARRAY:
        array = msg.array
        array.SetInParent()  # an array even when empty
        if row.dtype:
            array.dtype = row.dtype
        if row.shape:
            array.shape.extend(int(d) for d in row.shape.split(","))
        if row.data:
            array.data = row.data
    elif row.text is None:
        return
    elif row.kind == KIND_TEXT:
        msg.text = row.text
    elif row.kind == KIND_URI:
        msg.uri = row.text
    else:
        msg.json = row.text


def fill_timestamp(msg: Timestamp, seconds: float) -> None:
    msg.seconds, msg.nanos = divmod(round(seconds * 1e9), 1_000_000_000)


def timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    fill_timestamp(ts, seconds)
    return ts


def item(row: ItemRow) -> queue_pb2.Item:
    msg = queue_pb2.Item(id=row.id, lease_token=row.lease_token or "")
    if row.input is not None:
        fill_payload(msg.input, row.input)
        msg.metadata_json = row.input.metadata or ""
    if row.priority != UNRANKED:
        msg.priority = row.priority
    if row.lease_expires_at is not None:
        fill_timestamp(msg.lease_expires_at, row.lease_expires_at)
    for worker, labels in row.others:
        msg.others.add(worker_id=worker, labels=labels)
    return msg


def labelled(row: AnnotationRow) -> queue_pb2.LabelledItem:
    msg = queue_pb2.LabelledItem(
        annotation_id=row.id,
        item_id=row.item_id,
        labels=row.labels,
        worker_id=row.worker_id,
        created_at=timestamp(row.created_at),
        confidence=row.confidence,
    )
    if row.input is not None:
        fill_payload(msg.input, row.input)
    if row.metadata:
        msg.metadata_json = row.metadata
    return msg


def project(row: ProjectRow) -> queue_pb2.Project:
    return queue_pb2.Project(
        name=row.name,
        options=row.options,
        multi_label=row.multi_label,
        allow_other=row.allow_other,
        lease_seconds=row.lease_seconds,
        model_version=row.model_version,
        created_at=timestamp(row.created_at),
        overlap=row.overlap,
        max_overlap=row.max_overlap,
        review_threshold=row.review_threshold,
        reviewers=row.reviewers,
        instructions=row.instructions,
        reliability_cut=row.reliability_cut,
    )


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def worker_stats(rows: Iterable[agreement.WorkerStats]) -> list[queue_pb2.WorkerStats]:
    return [
        queue_pb2.WorkerStats(
            worker_id=w.worker,
            labels=w.labels,
            agreement_with_consensus=_finite(w.agreement_with_consensus),
            compared=w.n_compared,
            seconds_per_label=_finite(w.seconds_per_label),
        )
        for w in rows
    ]


def agreement_message(
    row: agreement.Agreement, workers: Iterable[agreement.WorkerStats]
) -> queue_pb2.Agreement:
    return queue_pb2.Agreement(
        items=row.n_items,
        annotations=row.n_annotations,
        percent=_finite(row.percent),
        fleiss_kappa=_finite(row.fleiss_kappa),
        fleiss_items=row.fleiss_items,
        krippendorff_alpha=_finite(row.krippendorff_alpha),
        labels=[
            queue_pb2.LabelAgreement(
                label=x.label,
                percent=_finite(x.percent),
                fleiss_kappa=_finite(x.fleiss_kappa),
                krippendorff_alpha=_finite(x.krippendorff_alpha),
            )
            for x in row.per_label
        ],
        pairs=[
            queue_pb2.PairAgreement(
                worker_a=p.worker_a,
                worker_b=p.worker_b,
                items=p.n_items,
                percent=_finite(p.percent),
                cohen_kappa=_finite(p.cohen_kappa),
            )
            for p in row.pairs
        ],
        workers=worker_stats(workers),
    )


def progress(row: ProgressRow) -> queue_pb2.Progress:
    return queue_pb2.Progress(
        total=row.total,
        labelled=row.labelled,
        leased=row.leased,
        available=row.available,
        fraction=min(1.0, row.labelled / row.total) if row.total else 0.0,
        workers=[
            queue_pb2.WorkerCount(worker_id=w, labelled=n) for w, n in sorted(row.workers.items())
        ],
        labels=[queue_pb2.LabelCount(label=k, count=n) for k, n in sorted(row.labels.items())],
        last_annotation_id=row.last_annotation_id,
        annotations=row.annotations,
        in_review=row.in_review,
        worker_stats=worker_stats(row.worker_stats),
        last_training_run_id=row.last_training_run_id,
    )


def project_stats(row: ProjectStatsRow) -> queue_pb2.GetProjectStatsResponse:
    workers = []
    for w in row.workers:
        msg = queue_pb2.WorkerActivity(
            worker_id=w.worker_id,
            labels=w.labels,
            first_label_at=timestamp(w.first_at),
            last_label_at=timestamp(w.last_at),
            active_seconds=w.active_seconds,
            compared=w.compared,
            agreed=w.agreed,
        )
        if w.active_seconds > 0:
            msg.labels_per_minute = 60.0 * w.active_gaps / w.active_seconds
        if w.compared:
            msg.agreement_with_consensus = w.agreed / w.compared
        workers.append(msg)
    return queue_pb2.GetProjectStatsResponse(
        workers=workers,
        buckets=[
            queue_pb2.TimeBucket(start=timestamp(start), labels=n) for start, n in row.buckets
        ],
        bucket_seconds=row.bucket_seconds,
    )


def batched(messages: Iterable, budget: int) -> Iterator[list]:
    """Group messages so each group's serialised size stays under `budget` bytes."""
    group: list = []
    size = 0
    for msg in messages:
        n = msg.ByteSize() + 8
        if group and size + n > budget:
            yield group
            group, size = [], 0
        group.append(msg)
        size += n
    if group:
        yield group


def training_run(row: TrainingRunRow) -> queue_pb2.TrainingRun:
    msg = queue_pb2.TrainingRun(
        status=row.status,
        message=row.message,
        n_labels=row.n_labels,
        n_scored=row.n_scored,
        model_version=row.model_version,
        seconds=row.seconds,
        started_at=timestamp(row.started_at),
        trainer=row.trainer,
        phases=[queue_pb2.RunPhase(name=n, seconds=s) for n, s in row.phases],
    )
    if row.score is not None:
        msg.score = row.score
    if row.score_std is not None:
        msg.score_std = row.score_std
    return msg


def training_run_row(msg: queue_pb2.TrainingRun) -> TrainingRunRow:
    for name in ("score", "score_std", "seconds"):
        if not math.isfinite(getattr(msg, name)):
            raise InvalidArgument(f"run {name} must be a finite number")
    if not msg.status:
        raise InvalidArgument("run status is empty")
    for name in ("status", "message", "trainer"):
        no_nul(getattr(msg, name), f"run {name}")
    if msg.n_labels < 0 or msg.n_scored < 0 or msg.model_version < 0:
        raise InvalidArgument("run counts and model_version must be >= 0")
    if len(msg.phases) > MAX_PHASES:
        raise InvalidArgument(f"a run has at most {MAX_PHASES} phases; got {len(msg.phases)}")
    for phase in msg.phases:
        if not phase.name or len(phase.name) > 40:
            raise InvalidArgument("each run phase needs a name of 1 to 40 characters")
        no_nul(phase.name, "run phase name")
        if not math.isfinite(phase.seconds) or phase.seconds < 0:
            raise InvalidArgument(f"run phase {phase.name!r}: seconds must be finite and >= 0")
    return TrainingRunRow(
        status=msg.status[:40],
        message=msg.message,
        score=msg.score if msg.HasField("score") else None,
        score_std=msg.score_std if msg.HasField("score_std") else None,
        n_labels=msg.n_labels,
        n_scored=msg.n_scored,
        model_version=msg.model_version,
        seconds=msg.seconds,
        started_at=msg.started_at.ToNanoseconds() / 1e9,
        trainer=msg.trainer[:200],
        phases=[(p.name, p.seconds) for p in msg.phases],
    )


#: phases one TrainingRun may carry (pull, fit, score, push and a few more)
MAX_PHASES = 16


def packed_block(block: PackedRows, budget: int) -> Iterator[queue_pb2.StreamUnlabelledResponse]:
    """A chunk the database packed already, cut into replies of at most `budget` bytes."""
    inner = [int(d) for d in block.shape.split(",")] if block.shape else []
    n = len(block.ids)
    stride = len(block.data) // n if n else 0
    per_reply = max(1, budget // (stride + 16))
    data = memoryview(block.data)
    for start in range(0, n, per_reply):
        end = min(n, start + per_reply)
        yield queue_pb2.StreamUnlabelledResponse(
            ids=block.ids[start:end],
            priorities=block.priorities[start:end],
            rows=arrays_pb2.NDArray(
                dtype=block.dtype,
                shape=[end - start, *inner],
                data=block.data if end - start == n else bytes(data[start * stride : end * stride]),
            ),
            cursor=block.ids[end - 1],
        )


def packed_unlabelled(
    rows: list[ItemRow], budget: int
) -> Iterator[queue_pb2.StreamUnlabelledResponse]:
    """Runs of array items sharing dtype and shape go out as one stacked array each (a few
    large byte strings instead of one message per item); other items go out one by one."""
    run: list[ItemRow] = []
    size = 0

    def flush() -> queue_pb2.StreamUnlabelledResponse:
        first = run[0].input
        inner = [int(d) for d in first.shape.split(",")] if first.shape else []
        reply = queue_pb2.StreamUnlabelledResponse(
            ids=[r.id for r in run],
            priorities=[r.priority for r in run],
            rows=arrays_pb2.NDArray(
                dtype=first.dtype,
                shape=[len(run), *inner],
                data=b"".join(r.input.data for r in run),
            ),
            cursor=run[-1].id,
        )
        run.clear()
        return reply

    for row in rows:
        x = row.input
        if x.kind != KIND_ARRAY:
            if run:
                yield flush()
                size = 0
            yield queue_pb2.StreamUnlabelledResponse(items=[item(row)], cursor=row.id)
            continue
        same = run and (run[0].input.dtype, run[0].input.shape) == (x.dtype, x.shape)
        if run and (not same or size + len(x.data) > budget):
            yield flush()
            size = 0
        run.append(row)
        size += len(x.data) + 16
    if run:
        yield flush()


# -- API tokens (issue 16) ------------------------------------------------------------------

ROLES = {
    queue_pb2.ROLE_ADMIN: "admin",
    queue_pb2.ROLE_TRAINER: "trainer",
    queue_pb2.ROLE_LABELLER: "labeller",
}
ROLE_CODES = {name: code for code, name in ROLES.items()}


def role_name(code: int) -> str:
    if code not in ROLES:
        raise InvalidArgument(f"role {code} is not one of ROLE_ADMIN, ROLE_TRAINER, ROLE_LABELLER")
    return ROLES[code]


def token(
    name: str,
    role: str,
    projects: Iterable[str] | None,
    any_worker: bool,
    created_at: float | None = None,
    revoked_at: float | None = None,
) -> queue_pb2.Token:
    """A token's description (never its value); `projects` None means all projects."""
    return queue_pb2.Token(
        name=name,
        role=ROLE_CODES.get(role, queue_pb2.ROLE_UNSPECIFIED),
        projects=sorted(projects or ()),
        any_worker=any_worker,
        created_at=timestamp(created_at),
        revoked_at=timestamp(revoked_at),
    )


def token_row(row: dict) -> queue_pb2.Token:
    """A row of `Store.list_tokens` as a Token message."""
    projects = None if row["projects"] is None else json.loads(row["projects"])
    return token(
        row["name"],
        row["role"],
        projects,
        bool(row["any_worker"]),
        row["created_at"],
        row["revoked_at"],
    )
