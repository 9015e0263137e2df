"""`AsyncQueueClient`: the asyncio twin of `QueueClient`, over grpc.aio.

Same methods and conversions as the sync client (requests are built by the same helpers);
use it from async code such as a web backend or a simulated crowd.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np

from labelgrid import channels
from labelgrid.client import (
    CHUNK_BYTES,
    RETRY_ANY_CALL,
    RETRY_CODES,
    Item,
    _add_plan,
    _labels,
    _priority_requests,
    project_request,
)
from labelgrid_proto.v1 import queue_pb2, queue_pb2_grpc

T = TypeVar("T")


class AsyncQueueClient:
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
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.retries = retries
        token = token if token is not None else os.environ.get("LABELGRID_TOKEN") or None
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        if tls or tls_ca or tls_cert:
            creds = channels.credentials(tls_ca, tls_cert, tls_key)
            self.channel = grpc.aio.secure_channel(address, creds, channels.OPTIONS)
        else:
            self.channel = grpc.aio.insecure_channel(address, channels.OPTIONS)
        self.stub = queue_pb2_grpc.QueueServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncQueueClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _retry(self, call: Callable[[], Awaitable[T]], idempotent: bool = True) -> T:
        """As `QueueClient._retry`: UNAVAILABLE for calls safe to repeat, ABORTED for all."""
        codes = RETRY_CODES if idempotent else RETRY_ANY_CALL
        delay = 0.1
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in codes or attempt == self.retries:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    async def create_project(
        self, name: str, options: Sequence[Any] = (), **settings: Any
    ) -> queue_pb2.Project:
        """As `QueueClient.create_project`."""
        request = project_request(name, options, **settings)
        reply = await self._retry(
            lambda: self.stub.CreateProject(request, timeout=self.timeout, metadata=self.metadata)
        )
        return reply.project

    async def add_features(
        self,
        project: str,
        features: Any,
        *,
        labels: Sequence[Any] | None = None,
        priorities: Sequence[float] | None = None,
        key: str | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> list[int]:
        messages = _add_plan(project, features, labels, priorities, key, chunk_bytes)

        def call() -> Awaitable[queue_pb2.AddFeaturesResponse]:
            return self.stub.AddFeatures(
                messages(), timeout=max(self.timeout, 600), metadata=self.metadata
            )

        reply = await self._retry(call, idempotent=bool(key))
        return list(reply.ids)

    async def pop(self, project: str, worker_id: str, n: int = 1) -> list[Item]:
        request = queue_pb2.PopRequest(project=project, worker_id=worker_id, n=n)
        reply = await self._retry(
            lambda: self.stub.Pop(request, timeout=self.timeout, metadata=self.metadata), False
        )
        return [Item.from_proto(m) for m in reply.items]

    async def submit(
        self, project: str, item: Item, labels: Any, worker_id: str, *, pop_next: bool = False
    ) -> queue_pb2.SubmitResponse:
        request = queue_pb2.SubmitRequest(
            project=project,
            item_id=item.id,
            lease_token=item.lease_token,
            worker_id=worker_id,
            labels=_labels(labels),
            pop_next=pop_next,
        )
        return await self._retry(
            lambda: self.stub.Submit(request, timeout=self.timeout, metadata=self.metadata)
        )

    async def release(self, project: str, item: Item, worker_id: str) -> None:
        request = queue_pb2.ReleaseRequest(
            project=project, item_id=item.id, lease_token=item.lease_token, worker_id=worker_id
        )
        await self._retry(
            lambda: self.stub.Release(request, timeout=self.timeout, metadata=self.metadata), False
        )

    async def undo(self, project: str, worker_id: str) -> tuple[Item, list[str]]:
        request = queue_pb2.UndoRequest(project=project, worker_id=worker_id)
        reply = await self._retry(
            lambda: self.stub.Undo(request, timeout=self.timeout, metadata=self.metadata), False
        )
        return Item.from_proto(reply.item), list(reply.labels)

    async def update_priorities(
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
        """As `QueueClient.update_priorities` (relabel requests included)."""

        def call() -> Awaitable[queue_pb2.UpdatePrioritiesResponse]:
            requests = _priority_requests(
                project, ids, priorities, model_version, chunk, relabel_ids, relabel_priorities
            )
            return self.stub.UpdatePriorities(
                requests, timeout=max(self.timeout, 600), metadata=self.metadata
            )

        return await self._retry(call)

    async def stream_labelled(
        self,
        project: str,
        after: int = 0,
        *,
        follow: bool = False,
        labels_only: bool = False,
    ) -> AsyncIterator[queue_pb2.StreamLabelledResponse]:
        request = queue_pb2.StreamLabelledRequest(
            project=project, after_annotation_id=after, follow=follow, labels_only=labels_only
        )
        async for chunk in self.stub.StreamLabelled(request, metadata=self.metadata):
            yield chunk

    async def stream_unlabelled(
        self, project: str, after: int = 0, *, ids_only: bool = False
    ) -> AsyncIterator[queue_pb2.StreamUnlabelledResponse]:
        request = queue_pb2.StreamUnlabelledRequest(
            project=project, after_item_id=after, ids_only=ids_only
        )
        async for chunk in self.stub.StreamUnlabelled(request, metadata=self.metadata):
            yield chunk

    async def progress(self, project: str) -> queue_pb2.Progress:
        request = queue_pb2.GetProgressRequest(project=project)
        reply = await self._retry(
            lambda: self.stub.GetProgress(request, timeout=self.timeout, metadata=self.metadata)
        )
        return reply.progress

    async def watch_progress(
        self, project: str, worker_id: str = ""
    ) -> AsyncIterator[queue_pb2.Progress]:
        """Progress now and at each change; with `worker_id`, `workers` holds only that
        worker's count (what a labeller's view needs, small however large the crowd)."""
        request = queue_pb2.WatchProgressRequest(project=project, worker_id=worker_id)
        async for reply in self.stub.WatchProgress(request, metadata=self.metadata):
            yield reply.progress
