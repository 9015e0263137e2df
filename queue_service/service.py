"""RPC handlers of `labelgrid.v1.QueueService`: validate, call the store, build replies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import numpy as np

from labelgrid_proto.v1 import queue_pb2, queue_pb2_grpc
from queue_service import auth, consensus, convert, crowd, routing
from queue_service.auth import Authenticator
from queue_service.config import Settings
from queue_service.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QueueError,
    ResourceExhausted,
)
from queue_service.notify import ChangeNotifier
from queue_service.run_replies import RunReplies
from queue_service.schema import UNRANKED
from queue_service.store import AnnotationRow, InputRow, ProjectRow, RowBlock, Store, failures
from queue_service.watch import Fanout, ProgressViews

log = logging.getLogger("labelgrid.queue")

DEFAULT_LEASE_SECONDS = 600
MAX_LEASE_SECONDS = 7 * 24 * 3600
MAX_NAME_CHARS = 200
MAX_OVERLAP = 100
MAX_INSTRUCTIONS_CHARS = 100_000
MAX_BUCKET_SECONDS = 366 * 24 * 3600
CONSENSUS_METHODS = {
    queue_pb2.CONSENSUS_MAJORITY: consensus.MAJORITY,
    queue_pb2.CONSENSUS_DAWID_SKENE: consensus.DAWID_SKENE,
}
DEFAULT_CHUNK = 1000
# a follower whose next labels are taken but not yet settled reads again this soon, then
# twice as late each time, up to the follow poll (store/settled.py)
SETTLE_RETRY = 0.005


def _status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, QueueError):
        return exc.code, str(exc)
    found = failures.status(exc)  # an outage, a timeout, a conflict: store/failures.py
    if found is not None:
        return found
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


def _log_error(method: str, exc: Exception, code: grpc.StatusCode) -> None:
    if code == grpc.StatusCode.INTERNAL:  # a bug: the traceback is what we need
        log.exception("rpc failed", extra={"method": method, "code": code.name})
    elif code == grpc.StatusCode.UNAVAILABLE:
        # an outage fails every call alike: one line each, not hundreds of equal tracebacks
        why = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("rpc unavailable", extra={"method": method, "code": code.name, "why": why})
    else:
        log.info("rpc refused", extra={"method": method, "code": code.name, "why": str(exc)})


def unary(fn: Callable) -> Callable:
    """Turn QueueErrors (and database outages) into gRPC statuses for a unary handler."""

    @functools.wraps(fn)
    async def wrapper(self: QueueService, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            await self.auth.authenticate(context, fn.__name__)
            return await fn(self, request, context)
        except Exception as exc:
            code, message = _status(exc)
            _log_error(fn.__name__, exc, code)
            await context.abort(code, message)

    return wrapper


def streaming(fn: Callable) -> Callable:
    """The same for a server-streaming handler (an async generator)."""

    @functools.wraps(fn)
    async def wrapper(
        self: QueueService, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            await self.auth.authenticate(context, fn.__name__)
            async for message in fn(self, request, context):
                yield message
        except Exception as exc:
            code, message = _status(exc)
            _log_error(fn.__name__, exc, code)
            await context.abort(code, message)

    return wrapper


def _consume(read: asyncio.Future) -> None:
    """Collect a read a stream started ahead and no longer needs (its error, if any, is
    not worth a "never retrieved" warning)."""
    if not read.cancelled():
        read.exception()


def _need(value: str, what: str, limit: int = MAX_NAME_CHARS) -> str:
    if not value:
        raise InvalidArgument(f"{what} is empty")
    if len(value) > limit:
        raise InvalidArgument(f"{what} is {len(value)} characters; at most {limit}")
    return convert.no_nul(value, what)


class QueueService(queue_pb2_grpc.QueueServiceServicer):
    def __init__(self, store: Store, settings: Settings, authenticator: Authenticator) -> None:
        self.store = store
        self.settings = settings
        self.notifier = ChangeNotifier()
        # one progress read per change, sent to every WatchProgress stream of a project
        self.progress = Fanout(
            self.notifier,
            self._read_progress,
            poll=settings.follow_poll_seconds,
            min_gap=settings.progress_min_seconds,
            budget=settings.progress_messages_per_second,
            duty=settings.progress_read_share,
        )
        # ListTrainingRuns replies shared by a project's pages for a moment (run_replies.py)
        self.run_replies = RunReplies(settings.progress_min_seconds)
        self.auth = authenticator
        # annotator-aware routing: reliabilities recomputed after labels change, coalesced
        self.routing = routing.Refresher(store, settings.reliability_seconds)
        # Streamed replies stay well under the receive limit a default client has (4 MiB).
        self.reply_budget = min(settings.max_message_bytes, 4 * 1024 * 1024) * 3 // 4

    async def _project(self, name: str, fresh: bool = False) -> ProjectRow:
        auth.check_project(_need(name, "project"))
        return await self.store.get_project(name, fresh=fresh)

    def _worker(self, requested: str) -> str:
        return _need(auth.worker_id(requested), "worker_id")

    def _labels(self, project: ProjectRow, labels: list[str]) -> list[str]:
        if not labels:
            raise InvalidArgument("labels are empty; give one label (or several if multi-label)")
        if not project.multi_label and len(labels) != 1:
            raise InvalidArgument(
                f"project {project.name!r} is single-label; got {len(labels)} labels"
            )
        if len(set(labels)) != len(labels):
            raise InvalidArgument(f"labels {labels} repeat a value")
        for label in labels:
            _need(label, "a label", self.settings.max_label_chars)
            if project.options and not project.allow_other and label not in project.options:
                raise InvalidArgument(
                    f"label {label!r} is not an option of project {project.name!r}; "
                    f"options are {list(project.options)}"
                )
        return sorted(labels) if project.multi_label else labels

    @staticmethod
    def _instructions(text: str) -> str:
        if len(text) > MAX_INSTRUCTIONS_CHARS:
            raise InvalidArgument(
                f"instructions are {len(text)} characters; at most {MAX_INSTRUCTIONS_CHARS}"
            )
        return convert.no_nul(text, "instructions")

    def _n(self, n: int) -> int:
        if n == 0:
            return 1
        if not 1 <= n <= self.settings.max_pop:
            raise InvalidArgument(f"n must be between 1 and {self.settings.max_pop}; got {n}")
        return n

    def _chunk(self, n: int) -> int:
        if n == 0:
            return DEFAULT_CHUNK
        if not 1 <= n <= self.settings.max_chunk_items:
            raise InvalidArgument(
                f"chunk_size must be between 1 and {self.settings.max_chunk_items}; got {n}"
            )
        return n

    # -- projects -----------------------------------------------------------------------

    @unary
    async def CreateProject(self, request, context):
        spec = request.project
        _need(spec.name, "project name")
        options = list(spec.options)
        for option in options:
            _need(option, "an option", self.settings.max_label_chars)
        if len(set(options)) != len(options):
            raise InvalidArgument(f"options {options} repeat a value")
        lease = spec.lease_seconds or DEFAULT_LEASE_SECONDS
        if not 1 <= lease <= MAX_LEASE_SECONDS:
            raise InvalidArgument(
                f"lease_seconds must be between 1 and {MAX_LEASE_SECONDS}; got {lease}"
            )
        overlap = spec.overlap or 1
        if not 1 <= overlap <= MAX_OVERLAP:
            raise InvalidArgument(f"overlap must be between 1 and {MAX_OVERLAP}; got {overlap}")
        most = spec.max_overlap or overlap
        if not overlap <= most <= MAX_OVERLAP:
            raise InvalidArgument(
                f"max_overlap must be between overlap ({overlap}) and {MAX_OVERLAP}; got {most}"
            )
        threshold = spec.review_threshold
        if not 0.0 <= threshold <= 1.0:
            raise InvalidArgument(f"review_threshold must be between 0 and 1; got {threshold}")
        reviewers = sorted(set(spec.reviewers))
        for name in reviewers:
            _need(name, "a reviewer")
        cut = spec.reliability_cut
        if not 0.0 <= cut <= 1.0:  # NaN fails too
            raise InvalidArgument(f"reliability_cut must be between 0 and 1; got {cut}")
        # overlap 1 with max_overlap > 1: one label per item, more on request (a model's
        # relabel requests, or a disagreement among them), so agreement settings apply
        if (threshold or reviewers or cut) and most < 2:
            raise InvalidArgument(
                "review_threshold, reviewers and reliability_cut need items with two labels "
                "or more: set overlap >= 2, or max_overlap >= 2 for more labels on request"
            )
        if threshold and not reviewers and most == overlap:
            raise InvalidArgument(
                "review_threshold needs reviewers to adjudicate, or max_overlap > overlap "
                "to ask for more labels"
            )
        row, created = await self.store.create_project(
            ProjectRow(
                id=0,
                name=spec.name,
                options=tuple(options),
                multi_label=spec.multi_label,
                allow_other=spec.allow_other,
                lease_seconds=lease,
                model_version=0,
                created_at=0.0,
                overlap=overlap,
                max_overlap=most,
                review_threshold=threshold,
                reviewers=tuple(reviewers),
                instructions=self._instructions(spec.instructions),
                reliability_cut=cut,
            ),
            request.exist_ok,
        )
        if created:
            log.info("project created", extra={"project": row.name})
        return queue_pb2.CreateProjectResponse(project=convert.project(row), created=created)

    @unary
    async def GetProject(self, request, context):
        row = await self._project(request.project, fresh=True)
        return queue_pb2.GetProjectResponse(project=convert.project(row))

    @unary
    async def ListProjects(self, request, context):
        rows = auth.visible(await self.store.list_projects())
        return queue_pb2.ListProjectsResponse(projects=[convert.project(r) for r in rows])

    @unary
    async def SetProjectInstructions(self, request, context):
        project = await self._project(request.project)
        row = await self.store.set_instructions(project, self._instructions(request.instructions))
        return queue_pb2.SetProjectInstructionsResponse(project=convert.project(row))

    # -- adding items -------------------------------------------------------------------

    @unary
    async def AddFeatures(self, request_iterator, context):
        project: ProjectRow | None = None
        key = ""
        inputs: list[InputRow | RowBlock] = []
        labels: list[list[str] | None] = []
        priorities: list[float] = []
        any_priority = False
        digest = hashlib.sha256()
        index = 0
        async for chunk in request_iterator:
            if project is None:
                project = await self._project(chunk.project)
                key = (
                    _need(chunk.idempotency_key, "idempotency_key") if chunk.idempotency_key else ""
                )
            elif chunk.project and chunk.project != project.name:
                raise InvalidArgument(
                    f"chunk names project {chunk.project!r} but the call began with "
                    f"{project.name!r}; one call adds to one project"
                )
            if chunk.idempotency_key and chunk.idempotency_key != key:
                raise InvalidArgument("idempotency_key changed within one call")
            new = [convert.input_row(it, f"item {index + i}") for i, it in enumerate(chunk.items)]
            block = (
                convert.row_block(chunk.rows, f"rows at item {index + len(new)}")
                if chunk.HasField("rows")
                else None
            )
            if block is not None:
                self._check_size(block.stride, index + len(new))
            # without labels or priorities a block stays whole: no per-row objects or hashing
            whole = block is not None and not chunk.labels and not chunk.priorities
            if block is not None and not whole:
                new += block.rows()
            if chunk.labels and len(chunk.labels) != len(new):
                raise InvalidArgument(
                    f"a chunk has {len(new)} items but {len(chunk.labels)} labels; "
                    "give one Labels per item or none"
                )
            if chunk.priorities and len(chunk.priorities) != len(new):
                raise InvalidArgument(
                    f"a chunk has {len(new)} items but {len(chunk.priorities)} priorities; "
                    "give one per item or none"
                )
            chunk_labels = chunk.labels
            chunk_prios = list(chunk.priorities)
            any_priority = any_priority or bool(chunk_prios)
            for i, row in enumerate(new):
                self._check_size(len(row.data) if row.data is not None else 0, index + i)
                values = chunk_labels[i].values if chunk_labels else None
                lab = self._labels(project, list(values)) if values else None
                prio = chunk_prios[i] if chunk_prios else UNRANKED
                if chunk_prios and not math.isfinite(prio):
                    raise InvalidArgument(f"priority of item {index + i} is not finite")
                convert.digest_update(digest, row, lab, prio)
                labels.append(lab)
                priorities.append(prio)
            inputs += new
            index += len(new)
            if whole:
                convert.digest_block(digest, block)
                labels += [None] * block.n
                priorities += [UNRANKED] * block.n
                inputs.append(block)
                index += block.n
        if project is None:
            raise InvalidArgument("AddFeatures received no messages; send at least the project")
        ids, existed = await self.store.add_items(
            project,
            inputs,
            labels,
            priorities if any_priority else None,
            key or None,
            digest.hexdigest(),
        )
        if not existed:
            self.notifier.notify(project.id)
            log.info("items added", extra={"project": project.name, "count": len(ids)})
        return queue_pb2.AddFeaturesResponse(ids=ids, already_existed=existed)

    def _check_size(self, nbytes: int, index: int) -> None:
        limit = self.settings.max_array_bytes
        if nbytes > limit:
            raise ResourceExhausted(
                f"item {index} is {nbytes} bytes of array data; the limit "
                f"is {limit} (LABELGRID_MAX_ARRAY_BYTES)"
            )

    # -- leasing ------------------------------------------------------------------------

    @unary
    async def Pop(self, request, context):
        project = await self._project(request.project)
        worker = self._worker(request.worker_id)
        rows = await self.store.pop(
            project, worker, self._n(request.n), self.settings.max_leases_per_worker
        )
        if rows:
            self.notifier.notify(project.id)
        return queue_pb2.PopResponse(items=[convert.item(r) for r in rows])

    @unary
    async def Submit(self, request, context):
        project = await self._project(request.project)
        worker = self._worker(request.worker_id)
        if not request.lease_token:
            raise InvalidArgument("lease_token is empty; submit the token Pop returned")
        labels = self._labels(project, list(request.labels))
        result = await self.store.submit(
            project, request.item_id, request.lease_token, worker, labels, request.pop_next
        )
        self.notifier.notify(project.id)
        self.routing.touched(project)
        reply = queue_pb2.SubmitResponse(
            annotation_id=result.annotation_id, duplicate=result.duplicate
        )
        if result.next_item is not None:
            reply.next.CopyFrom(convert.item(result.next_item))
        return reply

    @unary
    async def Release(self, request, context):
        project = await self._project(request.project)
        worker = self._worker(request.worker_id)
        if not request.lease_token:
            raise InvalidArgument("lease_token is empty")
        await self.store.release(project, request.item_id, request.lease_token, worker)
        self.notifier.notify(project.id)
        return queue_pb2.ReleaseResponse()

    @unary
    async def Undo(self, request, context):
        project = await self._project(request.project)
        worker = self._worker(request.worker_id)
        row, labels = await self.store.undo(project, worker)
        self.notifier.notify(project.id)
        self.routing.touched(project)
        return queue_pb2.UndoResponse(item=convert.item(row), labels=labels)

    @unary
    async def ListLeases(self, request, context):
        project = await self._project(request.project)
        worker = self._worker(request.worker_id)
        rows = await self.store.list_leases(project, worker)
        return queue_pb2.ListLeasesResponse(items=[convert.item(r) for r in rows], worker_id=worker)

    # -- priorities ---------------------------------------------------------------------

    @unary
    async def UpdatePriorities(self, request_iterator, context):
        project: ProjectRow | None = None
        version = 0
        ids: list[np.ndarray] = []
        prios: list[np.ndarray] = []
        relabel_ids: list[np.ndarray] = []
        relabel_prios: list[np.ndarray] = []
        async for chunk in request_iterator:
            if project is None:
                project = await self._project(chunk.project)
                version = chunk.model_version
                if version < 0:
                    raise InvalidArgument(f"model_version must be >= 0; got {version}")
            elif chunk.project and chunk.project != project.name:
                raise InvalidArgument("one UpdatePriorities call updates one project")
            elif chunk.model_version and chunk.model_version != version:
                raise InvalidArgument("model_version changed within one call")
            if len(chunk.ids) != len(chunk.priorities):
                raise InvalidArgument(
                    f"a chunk has {len(chunk.ids)} ids but {len(chunk.priorities)} priorities"
                )
            if len(chunk.relabel_ids) != len(chunk.relabel_priorities):
                raise InvalidArgument(
                    f"a chunk has {len(chunk.relabel_ids)} relabel_ids but "
                    f"{len(chunk.relabel_priorities)} relabel_priorities"
                )
            ids.append(np.fromiter(chunk.ids, dtype=np.int64, count=len(chunk.ids)))
            prios.append(np.fromiter(chunk.priorities, dtype=np.float64, count=len(chunk.ids)))
            n = len(chunk.relabel_ids)
            relabel_ids.append(np.fromiter(chunk.relabel_ids, dtype=np.int64, count=n))
            relabel_prios.append(np.fromiter(chunk.relabel_priorities, dtype=np.float64, count=n))
        if project is None:
            raise InvalidArgument("UpdatePriorities received no messages")
        all_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        all_prios = np.concatenate(prios) if prios else np.empty(0, np.float64)
        again_ids = np.concatenate(relabel_ids) if relabel_ids else np.empty(0, np.int64)
        again_prios = np.concatenate(relabel_prios) if relabel_prios else np.empty(0, np.float64)
        if not np.isfinite(all_prios).all():
            raise InvalidArgument("priorities must be finite numbers (no NaN or infinity)")
        if not np.isfinite(again_prios).all():
            raise InvalidArgument("relabel_priorities must be finite numbers (no NaN or infinity)")
        if len(np.unique(all_ids)) != len(all_ids):
            raise InvalidArgument("ids repeat within one call; give each item one priority")
        if len(np.unique(again_ids)) != len(again_ids):
            raise InvalidArgument("relabel_ids repeat within one call; ask each item once")
        both = np.intersect1d(all_ids, again_ids)
        if len(both):
            raise InvalidArgument(
                f"{len(both)} ids (e.g. {int(both[0])}) are in both ids and relabel_ids; an "
                "item is either ranked for a first label or asked for one more, not both"
            )
        updated, version, relabel = await self.store.update_priorities(
            project, version, all_ids, all_prios, again_ids, again_prios
        )
        self.notifier.notify(project.id)
        if relabel.opened or relabel.ignored or relabel.withdrawn:
            log.info(
                "relabel requests",
                extra={
                    "project": project.name,
                    "model_version": version,
                    "opened": relabel.opened,
                    "ignored": relabel.ignored,
                    "withdrawn": relabel.withdrawn,
                },
            )
        return queue_pb2.UpdatePrioritiesResponse(
            updated=updated,
            model_version=version,
            relabelled=relabel.opened,
            relabel_ignored=relabel.ignored,
            relabel_withdrawn=relabel.withdrawn,
        )

    # -- reading ------------------------------------------------------------------------

    @streaming
    async def StreamLabelled(self, request, context):
        project = await self._project(request.project)
        limit = self._chunk(request.chunk_size)
        if request.after_annotation_id < 0:
            raise InvalidArgument("after_annotation_id must be >= 0")
        cursor = request.after_annotation_id
        if request.consensus:
            async for reply in self._stream_consensus(project, request, cursor, limit):
                yield reply
            return
        # how far this pass may read (store/settled.py), taken once before its reads
        settled = await self.store.settled_annotation_id()
        retry = SETTLE_RETRY
        while True:
            rows = await self.store.labelled_chunk(
                project, cursor, limit, not request.labels_only, settled
            )
            if rows:
                messages = [convert.labelled(r) for r in rows]
                for group in convert.batched(messages, self.reply_budget):
                    cursor = group[-1].annotation_id
                    yield queue_pb2.StreamLabelledResponse(items=group, cursor=cursor)
                if len(rows) == limit:
                    continue
            if not request.follow or self.notifier.closing:
                return
            settled, retry = await self._next_pass(project, retry)

    async def _next_pass(self, project: ProjectRow, retry: float) -> tuple[int | None, float]:
        """A follower's wait for the project's next change, or while labels are taken but not
        settled (committed out of order, or behind a long import) for `retry` seconds, doubled
        each time (nothing announces that they settled); then the next pass's bound, and the
        next retry."""
        poll = self.settings.follow_poll_seconds
        if self.store.unsettled:
            await self.notifier.wait(project.id, min(retry, poll))
            retry = min(2 * retry, poll)
        else:
            await self.notifier.wait(project.id, poll)
            retry = SETTLE_RETRY
        return await self.store.settled_annotation_id(), retry

    def _method(self, value: int) -> str:
        if value not in CONSENSUS_METHODS:
            raise InvalidArgument(f"unknown consensus method {value}")
        return CONSENSUS_METHODS[value]

    async def _consensus_rows(self, project: ProjectRow, method: str) -> crowd.ConsensusRows:
        votes = await self.store.votes(project)
        return await asyncio.to_thread(crowd.consensus_rows, project, votes, method)

    async def _labelled_groups(
        self, rows: Sequence[AnnotationRow], limit: int, with_inputs: bool
    ) -> AsyncIterator[list[queue_pb2.LabelledItem]]:
        """Rows as LabelledItem messages, `limit` at a time (reading their inputs then),
        grouped under the reply budget."""
        for start in range(0, len(rows), limit):
            part = rows[start : start + limit]
            if with_inputs:
                inputs = await self.store.item_inputs([r.item_id for r in part])
                part = [dataclasses.replace(r, input=inputs.get(r.item_id)) for r in part]
            for group in convert.batched([convert.labelled(r) for r in part], self.reply_budget):
                yield group

    async def _stream_consensus(
        self, project: ProjectRow, request: Any, cursor: int, limit: int
    ) -> AsyncIterator[queue_pb2.StreamLabelledResponse]:
        """Consensus rows of items completed past the cursor; with follow, computed again
        whenever the project changes (Dawid-Skene re-weighs every worker each time)."""
        method = self._method(request.consensus)
        settled = await self.store.settled_annotation_id()  # taken before the votes
        retry = SETTLE_RETRY
        while True:
            rows = (await self._consensus_rows(project, method)).after(cursor, settled)
            async for group in self._labelled_groups(rows, limit, not request.labels_only):
                cursor = group[-1].annotation_id
                yield queue_pb2.StreamLabelledResponse(items=group, cursor=cursor)
            if not request.follow or self.notifier.closing:
                return
            settled, retry = await self._next_pass(project, retry)

    @streaming
    async def StreamUnlabelled(self, request, context):
        project = await self._project(request.project)
        limit = self._chunk(request.chunk_size)
        cursor = request.after_item_id
        # packed: the next chunk is read while this one is sent (database and network in
        # parallel); a stream that ends early lets that read finish on its own
        pending: asyncio.Future | None = None
        try:
            async for reply in self._unlabelled_replies(request, project, cursor, limit):
                if isinstance(reply, asyncio.Future):
                    pending = reply
                    continue
                yield reply
        finally:
            if pending is not None and not pending.done():
                pending.add_done_callback(_consume)

    async def _unlabelled_replies(
        self, request: Any, project: ProjectRow, cursor: int, limit: int
    ) -> AsyncIterator[Any]:
        """StreamUnlabelled's replies; also yields each read it starts ahead (a Future), so
        the handler can let it finish if the stream stops."""
        pending: asyncio.Future | None = None
        while True:
            if request.packed and request.ids_only:
                ids, priorities = await self.store.unlabelled_ids(project, cursor, limit)
                if ids:
                    cursor = ids[-1]
                    yield queue_pb2.StreamUnlabelledResponse(
                        ids=ids, priorities=priorities, cursor=cursor
                    )
                if len(ids) < limit:
                    return
                continue
            if request.packed:
                if pending is None:
                    block = await self.store.unlabelled_packed(project, cursor, limit)
                else:
                    block, pending = await pending, None
                if block is not None:
                    if len(block.ids) == limit:
                        pending = asyncio.ensure_future(
                            self.store.unlabelled_packed(project, block.ids[-1], limit)
                        )
                        yield pending
                    for reply in convert.packed_block(block, self.reply_budget):
                        yield reply
                    if pending is None:
                        return
                    cursor = block.ids[-1]
                    continue
            rows = await self.store.unlabelled_chunk(project, cursor, limit, request.ids_only)
            if request.packed and not request.ids_only:
                for reply in convert.packed_unlabelled(rows, self.reply_budget):
                    yield reply
                if rows:
                    cursor = rows[-1].id
            else:
                messages = [convert.item(r) for r in rows]
                for group in convert.batched(messages, self.reply_budget):
                    cursor = group[-1].id
                    yield queue_pb2.StreamUnlabelledResponse(items=group, cursor=cursor)
            if len(rows) < limit:
                return

    @unary
    async def GetProgress(self, request, context):
        project = await self._project(request.project)
        row = await self.store.progress(project)
        if request.worker_stats:
            auth.check_method("GetAgreement")
            votes = await self.store.votes(project)
            row.worker_stats = await asyncio.to_thread(crowd.worker_report, project, votes)
        return queue_pb2.GetProgressResponse(progress=convert.progress(row))

    async def _read_progress(self, project: ProjectRow) -> ProgressViews:
        row = await self.store.progress(project)
        full = queue_pb2.WatchProgressResponse(progress=convert.progress(row))
        return ProgressViews(full, row.workers)  # built once for every stream

    @streaming
    async def WatchProgress(self, request, context):
        project = await self._project(request.project)
        worker = request.worker_id
        if worker:
            _need(worker, "worker_id")
        async with contextlib.aclosing(self.progress.watch(project.id, project)) as views:
            async for view in views:
                yield view.for_worker(worker)

    @streaming
    async def ExportLabels(self, request, context):
        project = await self._project(request.project)
        limit = self._chunk(request.chunk_size)
        if request.consensus:
            rows = await self._consensus_rows(project, self._method(request.consensus))
            if request.by_item:
                rows = rows.by_item()
            async for group in self._labelled_groups(rows, limit, request.include_inputs):
                yield queue_pb2.ExportLabelsResponse(items=group)
            return
        if request.by_item:
            after: int | None = 0
            while after is not None:
                found, after = await self.store.labelled_by_item(
                    project, after, limit, request.include_inputs
                )
                messages = [convert.labelled(r) for r in found]
                for group in convert.batched(messages, self.reply_budget):
                    yield queue_pb2.ExportLabelsResponse(items=group)
            return
        cursor = 0
        while True:
            rows = await self.store.labelled_chunk(project, cursor, limit, request.include_inputs)
            messages = [convert.labelled(r) for r in rows]
            for group in convert.batched(messages, self.reply_budget):
                yield queue_pb2.ExportLabelsResponse(items=group)
            if len(rows) < limit:
                return
            cursor = rows[-1].id

    # -- training history -----------------------------------------------------------------

    @unary
    async def RecordTrainingRun(self, request, context):
        project = await self._project(request.project)
        run_id = await self.store.record_run(project, convert.training_run_row(request.run))
        self.run_replies.forget(project.id)
        self.notifier.notify(project.id)  # pages see the new run through their progress
        return queue_pb2.RecordTrainingRunResponse(id=run_id)

    @unary
    async def ListTrainingRuns(self, request, context):
        project = await self._project(request.project)
        if request.newest < 0:
            raise InvalidArgument(f"newest is {request.newest}; give 0 (every run) or more")
        # every page asks when its progress tells of a new run: one read serves them all
        views = self.progress.latest(project.id)
        known = views.full.progress.last_training_run_id if views is not None else None

        async def fetch() -> queue_pb2.ListTrainingRunsResponse:
            runs = await self.store.list_runs(project, request.newest)
            return queue_pb2.ListTrainingRunsResponse(runs=[convert.training_run(r) for r in runs])

        now = asyncio.get_running_loop().time()
        return await self.run_replies.read(project.id, request.newest, known, now, fetch)

    # -- agreement ------------------------------------------------------------------------

    @unary
    async def GetAgreement(self, request, context):
        project = await self._project(request.project)
        method = self._method(request.consensus or queue_pb2.CONSENSUS_MAJORITY)
        votes = await self.store.votes(project)
        measured, workers = await asyncio.to_thread(crowd.report, project, votes, method)
        return queue_pb2.GetAgreementResponse(
            agreement=convert.agreement_message(measured, workers)
        )

    # -- the owner's view (issue 15) -----------------------------------------------------

    @unary
    async def GetProjectStats(self, request, context):
        project = await self._project(request.project)
        width = request.bucket_seconds
        if not 0 <= width <= MAX_BUCKET_SECONDS:
            raise InvalidArgument(
                f"bucket_seconds must be between 0 and {MAX_BUCKET_SECONDS}; got {width}"
            )
        return convert.project_stats(await self.store.project_stats(project, width))

    # -- API tokens (issue 16) -----------------------------------------------------------

    @staticmethod
    def _unrestricted_admin() -> None:
        """Token management needs an admin token not bound to projects: a bound one could
        otherwise make itself an unbound token."""
        principal = auth.current.get()
        if principal is not None and principal.projects is not None:
            raise PermissionDenied(
                "managing tokens needs an admin token that is not bound to projects"
            )

    @unary
    async def CreateToken(self, request, context):
        self._unrestricted_admin()
        name = _need(request.name, "name")
        role = convert.role_name(request.role)
        projects = sorted(set(request.projects))
        for project in projects:
            _need(project, "a project")
        if request.any_worker and role != auth.LABELLER:
            raise InvalidArgument("any_worker is for labeller tokens only")
        value = auth.new_token()
        await self.store.create_token(
            name, role, projects or None, request.any_worker, auth.hash_token(value)
        )
        rows = [r for r in await self.store.list_tokens() if r["name"] == name]
        return queue_pb2.CreateTokenResponse(value=value, token=convert.token_row(rows[-1]))

    @unary
    async def ListTokens(self, request, context):
        self._unrestricted_admin()
        rows = await self.store.list_tokens()
        return queue_pb2.ListTokensResponse(tokens=[convert.token_row(r) for r in rows])

    @unary
    async def RevokeToken(self, request, context):
        self._unrestricted_admin()
        name = _need(request.name, "name")
        if not await self.store.revoke_token(name):
            raise NotFound(f"no live token named {name!r}")
        self.auth.forget(name)
        return queue_pb2.RevokeTokenResponse()

    @unary
    async def WhoAmI(self, request, context):
        principal = auth.current.get()
        if principal is None:
            return queue_pb2.WhoAmIResponse(auth_enabled=False)
        token = convert.token(
            principal.name, principal.role, principal.projects, principal.any_worker
        )
        return queue_pb2.WhoAmIResponse(auth_enabled=True, token=token)
