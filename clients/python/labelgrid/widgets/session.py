"""The labelling session behind a widget: what is shown, what is prefetched, what is sent.

Network calls run on one background thread, in order, so a click never waits on the
network: the next item is already leased and decoded while the user looks at the current
one, and a label is sent (with Submit's pop_next, one round trip per label) after the next
item is on screen. UI code calls these methods from the kernel's thread only.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc

from labelgrid.client import Item, QueueClient

log = logging.getLogger("labelgrid.widgets")


class LabellingSession:
    def __init__(
        self,
        client: QueueClient,
        project: str,
        worker_id: str,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.project = project
        self.worker_id = worker_id
        self.on_error = on_error or (lambda message: log.warning(message))
        self.current: Item | None = None
        self.submitted = 0
        self.started = False
        self._ready: collections.deque[Item] = collections.deque()
        self._incoming: collections.deque[Future[Item | None]] = collections.deque()
        self._pending: list[Future[Any]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelgrid-net")

    # -- background work ----------------------------------------------------------------

    def background(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run fn on the network thread, after everything sent so far."""
        future = self._executor.submit(fn)
        self._pending.append(future)
        self._pending = [f for f in self._pending if not f.done()]
        return future

    def _pop_one(self) -> Item | None:
        items = self.client.pop(self.project, self.worker_id, 1)
        return items[0] if items else None

    def _prefetch(self) -> None:
        if not self._ready and not self._incoming:
            self._incoming.append(self.background(self._pop_one))

    def _next(self) -> Item | None:
        """The next item to show: prefetched if possible, else fetched now."""
        while True:
            if self._ready:
                return self._ready.popleft()
            if not self._incoming:
                return self._pop_one()
            future = self._incoming.popleft()
            try:
                item = future.result()
            except grpc.RpcError as exc:
                self.on_error(f"could not fetch the next item: {exc.details()}")
                item = None
            if item is not None:
                return item

    # -- what the widget calls ----------------------------------------------------------

    def start(self) -> Item | None:
        """Lease the first item (and prefetch the second)."""
        if not self.started:
            self.started = True
            self.current = self._pop_one()
            self._prefetch()
        return self.current

    def label(self, labels: str | list[str]) -> Item | None:
        """Record a label for the current item and move to the next one at once."""
        item = self.current
        if item is None:
            return None

        def send() -> Item | None:
            try:
                reply = self.client.submit(
                    self.project, item, labels, self.worker_id, pop_next=True
                )
            except grpc.RpcError as exc:
                self.on_error(f"the label for item {item.id} was not saved: {exc.details()}")
                return None
            self.submitted += 1
            return Item.from_proto(reply.next) if reply.HasField("next") else None

        self._incoming.append(self.background(send))
        self.current = self._next()
        self._prefetch()
        return self.current

    def skip(self) -> Item | None:
        """Give the current item back to the pool (at once) and show the next one."""
        item = self.current
        if item is None:
            return None
        self.current = self._next()
        self._prefetch()

        def release() -> None:
            try:
                self.client.release(self.project, item, self.worker_id)
            except grpc.RpcError as exc:
                self.on_error(f"could not release item {item.id}: {exc.details()}")

        self.background(release)
        return self.current

    def undo(self) -> tuple[Item | None, list[str]]:
        """Reopen this worker's last label; the item shown now is kept for afterwards."""
        self.flush()
        try:
            item, labels = self.client.undo(self.project, self.worker_id)
        except grpc.RpcError as exc:
            self.on_error(f"nothing to undo: {exc.details()}")
            return self.current, []
        if self.current is not None:
            self._ready.appendleft(self.current)
        self.current = item
        self.submitted = max(0, self.submitted - 1)
        return item, labels

    def flush(self) -> None:
        """Wait until everything sent so far has been answered."""
        for future in list(self._pending):
            future.result()
        while self._incoming and self._incoming[0].done():
            item = self._incoming.popleft().result()
            if item is not None:
                self._ready.append(item)
        for future in list(self._incoming):
            future.result()
        while self._incoming:
            item = self._incoming.popleft().result()
            if item is not None:
                self._ready.append(item)

    def close(self) -> None:
        """Give back every lease this session holds, so others can label those items."""
        self.flush()
        held = ([self.current] if self.current else []) + list(self._ready)
        for item in held:
            try:
                self.client.release(self.project, item, self.worker_id)
            except grpc.RpcError:
                pass  # already expired or taken: nothing of ours to give back
        self.current = None
        self._ready.clear()
        self._executor.shutdown(wait=True)
