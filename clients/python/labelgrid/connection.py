"""`widget.queue`: one project on a queue service, embedded or remote."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import grpc

from labelgrid.client import QueueClient
from labelgrid.extras import require
from labelgrid_proto.v1 import queue_pb2


class ProjectQueue:
    """A project on a queue service. With `connection_string` the service runs in this
    process on that database (and `session()` / `data` give SQLAlchemy access to it);
    with `server="host:port"` it is a remote service."""

    def __init__(
        self,
        project: str,
        *,
        connection_string: str | None = None,
        server: str | None = None,
        token: str | None = None,
        tls_ca: str | None = None,
    ) -> None:
        if (connection_string is None) == (server is None):
            raise ValueError("give either connection_string= (embedded) or server= (remote)")
        self.project = project
        self.connection_string = connection_string
        self._sqlview = None
        if connection_string is not None:
            require("queue", "connection_string= (the queue service in this process)")
            from labelgrid.embedded import embedded_service

            self.service = embedded_service(connection_string)
            address = self.service.address
        else:
            self.service = None
            address = server
        self.client = QueueClient(address, token=token, tls_ca=tls_ca)

    def ensure_project(self, options: Iterable[Any], **settings: Any) -> queue_pb2.Project:
        """Use the project if it exists (whatever its settings), else create it with these
        (see `QueueClient.create_project`)."""
        try:
            return self.client.get_project(self.project)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        return self.client.create_project(self.project, options, exist_ok=True, **settings)

    # -- superintendent-style inspection ------------------------------------------------

    def _view(self) -> Any:
        if self.connection_string is None:
            raise RuntimeError(
                "session() and data need direct database access: build the widget with "
                "connection_string=... (embedded mode), not server=..."
            )
        if self._sqlview is None:
            from labelgrid.sqlview import Inspector

            self._sqlview = Inspector(self.connection_string, self.project)
        return self._sqlview

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A SQLAlchemy `Session` on the project's database (embedded mode only)."""
        with self._view().session() as session:
            yield session

    @property
    def data(self) -> type:
        return self._view().data
