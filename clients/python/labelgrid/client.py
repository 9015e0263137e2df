"""`QueueClient`: a thin synchronous client over the generated QueueService stubs.

It converts Python values to the contract (see `labelgrid.payloads`), chunks large uploads
under the message limit, sets deadlines, and retries with backoff: UNAVAILABLE (an outage:
the call may or may not have been applied) only for calls that are safe to repeat (reads, and
writes made idempotent by a key or a lease token); ABORTED (a transaction that lost a
conflict and changed nothing) for every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from labelgrid import arrays, channels, payloads
from labelgrid import features as features_mod
from labelgrid.extras import MissingExtra, install_command
from labelgrid_proto.v1 import queue_pb2, queue_pb2_grpc

T = TypeVar("T")

#: Upload chunks stay well under the 4 MiB default receive limit of a server.
CHUNK_BYTES = 2 * 1024 * 1024
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)
#: What a call that is not safe to repeat is still retried on: nothing of it was applied.
RETRY_ANY_CALL = (grpc.StatusCode.ABORTED,)
PROGRESS_ITEMS = 20_000


def _has_tqdm() -> bool:
    import importlib.util

    return importlib.util.find_spec("tqdm") is not None


@dataclass(frozen=True)
class Item:
    """A leased item: its id, decoded input, and the lease to submit against."""

    id: int
    input: Any
    lease_token: str
    lease_expires_at: float
    priority: float | None = None
    metadata_json: str = ""
    #: For a reviewer adjudicating the item: (worker, labels) the other annotators gave.
    others: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_proto(cls, msg: queue_pb2.Item) -> Item:
        return cls(
            id=msg.id,
            input=payloads.from_payload(msg.input),
            lease_token=msg.lease_token,
            lease_expires_at=msg.lease_expires_at.ToNanoseconds() / 1e9,
            priority=msg.priority if msg.HasField("priority") else None,
            metadata_json=msg.metadata_json,
            others=tuple((o.worker_id, tuple(o.labels)) for o in msg.others),
        )


CONSENSUS = {
    None: queue_pb2.CONSENSUS_UNSPECIFIED,
    "majority": queue_pb2.CONSENSUS_MAJORITY,
    "dawid_skene": queue_pb2.CONSENSUS_DAWID_SKENE,
}


def consensus_code(method: str | None) -> int:
    """The contract's code for a consensus method: None (raw annotations), "majority" or
    "dawid_skene"."""
    if method not in CONSENSUS:
        raise ValueError(f"unknown consensus {method!r}; use None, 'majority' or 'dawid_skene'")
    return CONSENSUS[method]


def project_request(
    name: str,
    options: Iterable[Any] = (),
    *,
    multi_label: bool = False,
    allow_other: bool = False,
    lease_seconds: int = 0,
    exist_ok: bool = True,
    overlap: int = 1,
    max_overlap: int = 0,
    review_threshold: float = 0.0,
    reviewers: Iterable[str] = (),
    instructions: str = "",
    reliability_cut: float = 0.0,
) -> queue_pb2.CreateProjectRequest:
    """A CreateProject request; see `QueueClient.create_project`."""
    return queue_pb2.CreateProjectRequest(
        project=queue_pb2.Project(
            name=name,
            options=[str(o) for o in options],
            multi_label=multi_label,
            allow_other=allow_other,
            lease_seconds=lease_seconds,
            overlap=overlap,
            max_overlap=max_overlap,
            review_threshold=review_threshold,
            reviewers=list(reviewers),
            instructions=instructions,
            reliability_cut=reliability_cut,
        ),
        exist_ok=exist_ok,
    )


def _labels(labels: Any) -> list[str]:
    """One label or several, as the strings the contract carries."""
    if isinstance(labels, str | bytes | np.generic) or not isinstance(labels, Iterable):
        return [str(labels)]
    return [str(v) for v in labels]


class QueueClient:
    """Synchronous client for one queue service address."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout: float = 30.0,
        retries: int = 5,
        token: str | None = None,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        """`token` (default: env LABELGRID_TOKEN) is sent on every call; `tls_ca` is the CA
        that signed the server's certificate, `tls_cert`/`tls_key` a client certificate."""
        self.address = address
        self.timeout = timeout
        self.retries = retries
        self.channel = channel or channels.channel(
            address, token=token, tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        self.stub = queue_pb2_grpc.QueueServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> QueueClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retry(self, call: Callable[[], T], idempotent: bool = True) -> T:
        codes = RETRY_CODES if idempotent else RETRY_ANY_CALL
        delay = 0.1
        for attempt in range(self.retries + 1):
            try:
                return call()
            except grpc.RpcError as exc:
                if exc.code() not in codes or attempt == self.retries:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    # -- projects -----------------------------------------------------------------------

    def create_project(
        self, name: str, options: Iterable[Any] = (), **settings: Any
    ) -> queue_pb2.Project:
        """Create a project (or, with exist_ok=True, the default, return the same one).

        Settings: multi_label, allow_other, lease_seconds; overlap=k for k labels per item
        from k different workers; review_threshold, max_overlap and reviewers for items whose
        labels disagree; reliability_cut for annotator-aware routing (workers estimated
        less reliable than it get items in an extra round only when nothing else is left
        for them); instructions (markdown shown to labellers by the web app) are
        stored for a new project only (see the Project message in
        protos/labelgrid/v1/queue.proto; `set_instructions` changes them)."""
        request = project_request(name, options, **settings)
        return self._retry(lambda: self.stub.CreateProject(request, timeout=self.timeout)).project

    def get_project(self, name: str) -> queue_pb2.Project:
        request = queue_pb2.GetProjectRequest(project=name)
        return self._retry(lambda: self.stub.GetProject(request, timeout=self.timeout)).project

    def set_instructions(self, project: str, instructions: str) -> queue_pb2.Project:
        """Replace a project's instructions (markdown; "" removes them). Admins only."""
        request = queue_pb2.SetProjectInstructionsRequest(
            project=project, instructions=instructions
        )
        return self._retry(
            lambda: self.stub.SetProjectInstructions(request, timeout=self.timeout)
        ).project

    def list_projects(self) -> list[queue_pb2.Project]:
        reply = self._retry(
            lambda: self.stub.ListProjects(queue_pb2.ListProjectsRequest(), timeout=self.timeout)
        )
        return list(reply.projects)

    # -- adding items -------------------------------------------------------------------

    def add_features(
        self,
        project: str,
        features: Any,
        *,
        labels: Sequence[Any] | None = None,
        priorities: Sequence[float] | None = None,
        key: str | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        progress: bool | None = None,
    ) -> list[int]:
        """Add items (a 2-d+ array adds one item per row) and return their ids.

        With `key`, repeating the call is a no-op returning the same ids, and the call is
        retried on UNAVAILABLE; without one it is sent once. Values the contract cannot carry
        exactly raise ValueError before anything is sent. A progress bar (tqdm, installed with
        labelgrid[widgets]) shows for more than PROGRESS_ITEMS items unless `progress=False`.
        """
        total = len(features)
        show = progress if progress is not None else total >= PROGRESS_ITEMS and _has_tqdm()
        messages = _add_plan(project, features, labels, priorities, key, chunk_bytes)

        def requests() -> Iterator[queue_pb2.AddFeaturesRequest]:
            chunks = messages()
            if not show:
                yield from chunks
                return
            try:
                from tqdm.auto import tqdm
            except ImportError as exc:
                raise MissingExtra(
                    f"progress=True needs tqdm: {install_command('widgets')}"
                ) from exc

            with tqdm(total=total, desc=f"adding to {project}", unit="item") as bar:
                for msg in chunks:
                    yield msg
                    bar.update(len(msg.items) + (msg.rows.shape[0] if msg.HasField("rows") else 0))

        def call() -> queue_pb2.AddFeaturesResponse:
            return self.stub.AddFeatures(requests(), timeout=max(self.timeout, 600))

        reply = self._retry(call, idempotent=bool(key))
        return list(reply.ids)

    # -- leasing ------------------------------------------------------------------------

    def pop(self, project: str, worker_id: str, n: int = 1) -> list[Item]:
        request = queue_pb2.PopRequest(project=project, worker_id=worker_id, n=n)
        reply = self._retry(lambda: self.stub.Pop(request, timeout=self.timeout), False)
        return [Item.from_proto(m) for m in reply.items]

    def submit(
        self,
        project: str,
        item: Item,
        labels: str | Sequence[str],
        worker_id: str,
        *,
        pop_next: bool = False,
    ) -> queue_pb2.SubmitResponse:
        """Record a label; retried safely, since a repeated submit is one annotation."""
        request = queue_pb2.SubmitRequest(
            project=project,
            item_id=item.id,
            lease_token=item.lease_token,
            worker_id=worker_id,
            labels=_labels(labels),
            pop_next=pop_next,
        )
        return self._retry(lambda: self.stub.Submit(request, timeout=self.timeout))

    def release(self, project: str, item: Item, worker_id: str) -> None:
        request = queue_pb2.ReleaseRequest(
            project=project, item_id=item.id, lease_token=item.lease_token, worker_id=worker_id
        )
        self._retry(lambda: self.stub.Release(request, timeout=self.timeout), False)

    def undo(self, project: str, worker_id: str) -> tuple[Item, list[str]]:
        request = queue_pb2.UndoRequest(project=project, worker_id=worker_id)
        reply = self._retry(lambda: self.stub.Undo(request, timeout=self.timeout), False)
        return Item.from_proto(reply.item), list(reply.labels)

    def list_leases(self, project: str, worker_id: str) -> list[Item]:
        """The worker's live leases in the project, oldest first (read-only)."""
        request = queue_pb2.ListLeasesRequest(project=project, worker_id=worker_id)
        reply = self._retry(lambda: self.stub.ListLeases(request, timeout=self.timeout))
        return [Item.from_proto(m) for m in reply.items]

    # -- priorities ---------------------------------------------------------------------

    def update_priorities(
        self,
        project: str,
        ids: Sequence[int] | np.ndarray,
        priorities: Sequence[float] | np.ndarray,
        model_version: int,
        *,
        chunk: int = 20_000,
        relabel_ids: Sequence[int] | np.ndarray = (),
        relabel_priorities: Sequence[float] | np.ndarray = (),
    ) -> queue_pb2.UpdatePrioritiesResponse:
        """Set the priorities of unlabelled items from one model version (higher first;
        an older version than the project's is refused with FAILED_PRECONDITION).

        `relabel_ids` with `relabel_priorities`: completed items the model wants one more
        label on, on the same priority scale (projects with max_overlap > overlap). The
        call replaces the project's open relabel requests: open ones not asked again are
        withdrawn unless leased. The reply counts `relabelled`, `relabel_ignored` (max_overlap
        reached, a final label, not completed) and `relabel_withdrawn`; see
        UpdatePrioritiesRequest in protos/labelgrid/v1/queue.proto."""
        return self._retry(
            lambda: self.stub.UpdatePriorities(
                _priority_requests(
                    project,
                    ids,
                    priorities,
                    model_version,
                    chunk,
                    relabel_ids,
                    relabel_priorities,
                ),
                timeout=max(self.timeout, 600),
            )
        )

    def request_relabels(
        self,
        project: str,
        ids: Sequence[int] | np.ndarray,
        priorities: Sequence[float] | np.ndarray,
        model_version: int,
    ) -> queue_pb2.UpdatePrioritiesResponse:
        """Ask one more label on these completed items (and on no others: open requests
        not repeated here are withdrawn unless leased), under `model_version`, without
        re-ranking the unlabelled items: `update_priorities` with relabel ids only."""
        return self.update_priorities(
            project,
            (),
            (),
            model_version,
            relabel_ids=ids,
            relabel_priorities=priorities,
        )

    # -- reading ------------------------------------------------------------------------

    def stream_labelled(
        self,
        project: str,
        after: int = 0,
        *,
        follow: bool = False,
        labels_only: bool = False,
        chunk_size: int = 0,
        timeout: float | None = None,
        consensus: str | None = None,
    ) -> Iterator[queue_pb2.StreamLabelledResponse]:
        """Annotations after the cursor; with `consensus` ("majority" or "dawid_skene")
        one row per completed item with its aggregated label and confidence instead."""
        request = queue_pb2.StreamLabelledRequest(
            project=project,
            after_annotation_id=after,
            follow=follow,
            labels_only=labels_only,
            chunk_size=chunk_size,
            consensus=consensus_code(consensus),
        )
        return self.stub.StreamLabelled(request, timeout=timeout)

    def stream_unlabelled(
        self,
        project: str,
        after: int = 0,
        *,
        chunk_size: int = 0,
        ids_only: bool = False,
        packed: bool = False,
    ) -> Iterator[queue_pb2.StreamUnlabelledResponse]:
        request = queue_pb2.StreamUnlabelledRequest(
            project=project,
            after_item_id=after,
            chunk_size=chunk_size,
            ids_only=ids_only,
            packed=packed,
        )
        return self.stub.StreamUnlabelled(request)

    def unlabelled(
        self, project: str, after: int = 0, *, chunk_size: int = 5000
    ) -> Iterator[tuple[list[int], list[Any]]]:
        """Unlabelled items in batches of (ids, inputs), streamed packed: arrays of one
        dtype and shape arrive stacked, so this is the fast way to read many of them."""
        for reply in self.stream_unlabelled(project, after, chunk_size=chunk_size, packed=True):
            if reply.HasField("rows"):
                yield list(reply.ids), list(arrays.decode(reply.rows))
            if reply.items:
                yield (
                    [i.id for i in reply.items],
                    [payloads.from_payload(i.input) for i in reply.items],
                )

    def progress(self, project: str, *, worker_stats: bool = False) -> queue_pb2.Progress:
        """Counts; with `worker_stats`, also each worker's labels, agreement with the
        consensus and pace (reads every annotation, so not for every click)."""
        request = queue_pb2.GetProgressRequest(project=project, worker_stats=worker_stats)
        return self._retry(lambda: self.stub.GetProgress(request, timeout=self.timeout)).progress

    def export_labels(
        self, project: str, *, include_inputs: bool = False, consensus: str | None = None
    ) -> list[queue_pb2.LabelledItem]:
        request = queue_pb2.ExportLabelsRequest(
            project=project, include_inputs=include_inputs, consensus=consensus_code(consensus)
        )

        def call() -> list[queue_pb2.LabelledItem]:
            return [it for chunk in self.stub.ExportLabels(request) for it in chunk.items]

        return self._retry(call)

    def export_chunks(
        self,
        project: str,
        *,
        include_inputs: bool = False,
        consensus: str | None = None,
        by_item: bool = False,
        chunk_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[list[queue_pb2.LabelledItem]]:
        """ExportLabels as it streams: one list of rows per reply, never all of them at once
        (`labelgrid.export` writes files from this). `by_item` orders the annotations, and the
        consensus rows, by item id, with each annotation's item metadata. Not retried: a
        broken stream raises, and the export is started again."""
        request = queue_pb2.ExportLabelsRequest(
            project=project,
            include_inputs=include_inputs,
            consensus=consensus_code(consensus),
            by_item=by_item,
            chunk_size=chunk_size,
        )
        for reply in self.stub.ExportLabels(request, timeout=timeout):
            yield list(reply.items)

    def agreement(self, project: str, *, consensus: str = "majority") -> queue_pb2.Agreement:
        """Inter-annotator agreement (percent, Fleiss' kappa, Krippendorff's alpha; per worker
        pair: percent and Cohen's kappa) and per-worker statistics against `consensus`."""
        request = queue_pb2.GetAgreementRequest(
            project=project, consensus=consensus_code(consensus)
        )
        return self._retry(lambda: self.stub.GetAgreement(request, timeout=self.timeout)).agreement

    def project_stats(
        self, project: str, *, bucket_seconds: int = 0
    ) -> queue_pb2.GetProjectStatsResponse:
        """The owner's statistics (admin tokens): per worker, labels, first and last label,
        active time, labels per minute and agreement with the majority answer; and labels
        per time bucket of `bucket_seconds` (0: a width giving at most about 60 buckets).
        Aggregated in the database, so it stays cheap on large projects."""
        request = queue_pb2.GetProjectStatsRequest(project=project, bucket_seconds=bucket_seconds)
        return self._retry(lambda: self.stub.GetProjectStats(request, timeout=self.timeout))

    # -- training history -----------------------------------------------------------------

    def record_training_run(self, project: str, run: queue_pb2.TrainingRun) -> int:
        request = queue_pb2.RecordTrainingRunRequest(project=project, run=run)
        return self._retry(
            lambda: self.stub.RecordTrainingRun(request, timeout=self.timeout), False
        ).id

    def list_training_runs(self, project: str, newest: int = 0) -> list[queue_pb2.TrainingRun]:
        """The project's recorded runs oldest first; only the last `newest` when given."""
        request = queue_pb2.ListTrainingRunsRequest(project=project, newest=newest)
        return list(
            self._retry(lambda: self.stub.ListTrainingRuns(request, timeout=self.timeout)).runs
        )

    # -- API tokens (issue 16) ------------------------------------------------------------

    def create_token(
        self,
        name: str,
        role: str,
        projects: Iterable[str] = (),
        *,
        any_worker: bool = False,
    ) -> tuple[str, queue_pb2.Token]:
        """Make an API token (admins not bound to projects): returns its value, shown this
        once (the service keeps only a hash), and its description. `role` is "admin",
        "trainer" or "labeller"; `projects` binds it to those projects (default: all)."""
        request = queue_pb2.CreateTokenRequest(
            name=name, role=role_code(role), projects=list(projects), any_worker=any_worker
        )
        reply = self._retry(lambda: self.stub.CreateToken(request, timeout=self.timeout), False)
        return reply.value, reply.token

    def list_tokens(self) -> list[queue_pb2.Token]:
        """Every token's name, role, projects and dates; never a value."""
        request = queue_pb2.ListTokensRequest()
        return list(self._retry(lambda: self.stub.ListTokens(request, timeout=self.timeout)).tokens)

    def revoke_token(self, name: str) -> None:
        request = queue_pb2.RevokeTokenRequest(name=name)
        self._retry(lambda: self.stub.RevokeToken(request, timeout=self.timeout), False)

    def whoami(self) -> queue_pb2.WhoAmIResponse:
        """The identity of this client's token (`auth_enabled` is False on an open service)."""
        request = queue_pb2.WhoAmIRequest()
        return self._retry(lambda: self.stub.WhoAmI(request, timeout=self.timeout))


ROLES = {
    "admin": queue_pb2.ROLE_ADMIN,
    "trainer": queue_pb2.ROLE_TRAINER,
    "labeller": queue_pb2.ROLE_LABELLER,
}


def role_code(role: str) -> int:
    """The contract's code for a role name."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {sorted(ROLES)}")
    return ROLES[role]


def _priority_requests(
    project: str,
    ids: Sequence[int] | np.ndarray,
    priorities: Sequence[float] | np.ndarray,
    model_version: int,
    chunk: int,
    relabel_ids: Sequence[int] | np.ndarray = (),
    relabel_priorities: Sequence[float] | np.ndarray = (),
) -> Iterator[queue_pb2.UpdatePrioritiesRequest]:
    """UpdatePriorities messages: a header, then chunks of ids and priorities, then chunks
    of relabel requests."""
    ids = np.asarray(ids, dtype=np.int64)
    prios = np.asarray(priorities, dtype=np.float64)
    if ids.shape != prios.shape:
        raise ValueError(f"{len(ids)} ids but {len(prios)} priorities")
    again = np.asarray(relabel_ids, dtype=np.int64)
    again_prios = np.asarray(relabel_priorities, dtype=np.float64)
    if again.shape != again_prios.shape:
        raise ValueError(f"{len(again)} relabel_ids but {len(again_prios)} relabel_priorities")
    yield queue_pb2.UpdatePrioritiesRequest(project=project, model_version=model_version)
    for start in range(0, len(ids), chunk):
        yield queue_pb2.UpdatePrioritiesRequest(
            ids=ids[start : start + chunk].tolist(),
            priorities=prios[start : start + chunk].tolist(),
        )
    for start in range(0, len(again), chunk):
        yield queue_pb2.UpdatePrioritiesRequest(
            relabel_ids=again[start : start + chunk].tolist(),
            relabel_priorities=again_prios[start : start + chunk].tolist(),
        )


def _add_plan(
    project: str,
    features: Any,
    labels: Sequence[Any] | None,
    priorities: Sequence[float] | None,
    key: str | None,
    chunk_bytes: int,
) -> Callable[[], Iterator[queue_pb2.AddFeaturesRequest]]:
    """A function giving the AddFeatures messages (chunks of about `chunk_bytes`), afresh
    on each call so a retry can resend them.

    Everything that can be refused locally (unsupported values, misaligned labels) is
    checked here, before any call starts, and raised as ValueError."""
    rows = features_mod.as_rows(features)
    if rows is not None:
        n = len(rows)
        arrays.encode(rows[:0])  # refuses an unsupported dtype now
        row_bytes = max(1, rows[0].nbytes if n else 1)
        step = max(1, chunk_bytes // row_bytes)

        def chunk(start: int, stop: int) -> queue_pb2.AddFeaturesRequest:
            return queue_pb2.AddFeaturesRequest(rows=arrays.encode(rows[start:stop]))
    else:
        items = [
            queue_pb2.NewItem(input=payloads.to_payload(v))
            for v in features_mod.as_values(features)
        ]
        n = len(items)
        step = max(1, min(10_000, chunk_bytes // 1024))

        def chunk(start: int, stop: int) -> queue_pb2.AddFeaturesRequest:
            return queue_pb2.AddFeaturesRequest(items=items[start:stop])

    if labels is not None and len(labels) != n:
        raise ValueError(f"{n} items but {len(labels)} labels")
    if priorities is not None and len(priorities) != n:
        raise ValueError(f"{n} items but {len(priorities)} priorities")
    label_sets = (
        None
        if labels is None
        else [queue_pb2.Labels(values=[] if lab is None else _labels(lab)) for lab in labels]
    )

    def messages() -> Iterator[queue_pb2.AddFeaturesRequest]:
        yield queue_pb2.AddFeaturesRequest(project=project, idempotency_key=key or "")
        for start in range(0, n, step):
            stop = min(n, start + step)
            msg = chunk(start, stop)
            if label_sets is not None:
                msg.labels.extend(label_sets[start:stop])
            if priorities is not None:
                msg.priorities.extend(float(p) for p in priorities[start:stop])
            yield msg

    return messages


__all__ = ["Item", "QueueClient"]
