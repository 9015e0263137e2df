"""Who may call the trainer service: the queue service's API tokens and roles.

The trainer has no database, so it asks the queue service who a token is (`WhoAmI`, sent
with the caller's own token) and caches the answer for LABELGRID_AUTH_CACHE_SECONDS (5 s):
one source of truth for tokens, a revoked token stops working here within the cache time,
and the trainer needs no database credentials. Roles:
- admin: everything, job control included (StartJob, StopJob, RetrainNow);
- trainer: read job state (ListJobs, GetStatus, WatchStatus);
- labeller: nothing here.
A token bound to projects sees and controls only their jobs.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import grpc

from labelgrid import channels
from labelgrid_proto.v1 import queue_pb2, queue_pb2_grpc
from labelgrid_serving.security import bearer_token

ADMIN, TRAINER = "admin", "trainer"
ROLES = {queue_pb2.ROLE_ADMIN: ADMIN, queue_pb2.ROLE_TRAINER: TRAINER}
#: most token checks kept (expired ones are dropped when it is reached)
MAX_CACHED = 10_000
#: method -> roles that may call it
ALLOWED = {
    "StartJob": {ADMIN},
    "StopJob": {ADMIN},
    "RetrainNow": {ADMIN},
    "ListJobs": {ADMIN, TRAINER},
    "GetStatus": {ADMIN, TRAINER},
    "WatchStatus": {ADMIN, TRAINER},
}


class Refused(Exception):
    """A call refused before it starts; `code` is the status the caller gets."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    projects: frozenset[str] | None

    def may_see(self, project: str) -> bool:
        return self.projects is None or project in self.projects


class TokenChecker:
    """Checks each caller's token with the queue service (cached) and its role."""

    def __init__(
        self,
        queue_address: str,
        enabled: bool,
        cache_seconds: float = 5.0,
        tls_ca: str = "",
        tls_cert: str = "",
        tls_key: str = "",
    ) -> None:
        self.queue_address = queue_address
        self.enabled = enabled
        self.cache_seconds = cache_seconds
        self._tls = (tls_ca, tls_cert, tls_key)
        self._cache: dict[str, tuple[float, Caller | None]] = {}
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> queue_pb2_grpc.QueueServiceStub:
        if self._channel is None:  # made on the serving loop, on first use
            ca, cert, key = self._tls
            if ca or cert:
                creds = channels.credentials(ca or None, cert or None, key or None)
                self._channel = grpc.aio.secure_channel(self.queue_address, creds)
            else:
                self._channel = grpc.aio.insecure_channel(self.queue_address)
        return queue_pb2_grpc.QueueServiceStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def check(
        self, context: grpc.aio.ServicerContext, method: str, project: str | None = None
    ) -> Caller | None:
        """The caller (None when auth is off); raises Refused when it may not call this."""
        if not self.enabled:
            return None
        token = bearer_token(context)
        if token is None:
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                "send an API token as 'authorization: Bearer <token>' metadata",
            )
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self.cache_seconds:
            caller = cached[1]
        else:
            caller = await self._resolve(token)
            if len(self._cache) >= MAX_CACHED:  # a flood of made-up tokens stays bounded
                self._cache = {
                    k: v for k, v in self._cache.items() if now - v[0] < self.cache_seconds
                }
            self._cache[digest] = (now, caller)
        if caller is None:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked API token")
        if caller.role not in ALLOWED[method]:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED, f"role {caller.role!r} may not call {method}"
            )
        if project is not None and not caller.may_see(project):
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this token is not allowed on project {project!r}",
            )
        return caller

    async def _resolve(self, token: str) -> Caller | None:
        try:
            reply = await self._stub().WhoAmI(
                queue_pb2.WhoAmIRequest(),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return None
            raise Refused(
                grpc.StatusCode.UNAVAILABLE,
                f"cannot check the token with the queue service at {self.queue_address}: "
                f"{exc.code().name}: {exc.details()}; retry",
            ) from None
        if not reply.auth_enabled:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the queue service at {self.queue_address} runs without --auth, so this "
                "trainer cannot check tokens: start the queue service with --auth",
            )
        role = ROLES.get(reply.token.role, "labeller")
        projects = frozenset(reply.token.projects) or None
        return Caller(reply.token.name, role, projects)
