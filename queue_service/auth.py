"""Who may call what: API tokens (sent as `authorization: Bearer …`), roles and projects.

Tokens are random (`lg_` + 256 bits) and stored only as SHA-256 hashes. Roles:
- admin: everything (create projects, add features, export, …);
- trainer: read projects and labels, stream data, update priorities, record training runs;
- labeller: pop, submit, release, undo, its own leases, and progress of its projects.
A token may be bound to projects; a labeller's worker id is its token's name, so nobody can
label as somebody else (a token made with `any_worker` may name workers itself: for trusted
front ends such as the shared labelling page).
"""

from __future__ import annotations

import contextvars
import hashlib
import secrets
import time

import grpc

from queue_service.errors import PermissionDenied, Unauthenticated
from queue_service.principal import Principal

ADMIN, TRAINER, LABELLER = "admin", "trainer", "labeller"
ROLES = (ADMIN, TRAINER, LABELLER)
READ = {"GetProject", "ListProjects", "GetProgress", "WatchProgress", "WhoAmI"}
ALLOWED = {
    TRAINER: READ
    | {
        "StreamLabelled",
        "StreamUnlabelled",
        "UpdatePriorities",
        "RecordTrainingRun",
        "ListTrainingRuns",
        "GetAgreement",
    },
    LABELLER: READ | {"Pop", "Submit", "Release", "Undo", "ListLeases"},
}

current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "labelgrid_principal", default=None
)


def new_token() -> str:
    return "lg_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Checks the caller of each RPC; a short cache keeps a token lookup off the hot path
    (a revoked token stops working within `cache_seconds`)."""

    def __init__(self, store, enabled: bool, cache_seconds: float = 5.0) -> None:
        self.store = store
        self.enabled = enabled
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, context: grpc.aio.ServicerContext, method: str) -> None:
        """Set the caller for this RPC (None when auth is off) and check its role."""
        if not self.enabled:
            current.set(None)
            return
        header = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise Unauthenticated("send an API token as 'authorization: Bearer <token>' metadata")
        digest = hash_token(header[7:].strip())
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self.cache_seconds:
            principal = cached[1]
        else:
            principal = await self.store.find_token(digest)
            self._cache[digest] = (now, principal)
        if principal is None:
            raise Unauthenticated("unknown or revoked API token")
        current.set(principal)
        check_method(method)

    def forget(self, name: str) -> None:
        """Drop a revoked token's cached lookups, so it stops working here at once."""
        for digest, (_, principal) in list(self._cache.items()):
            if principal is not None and principal.name == name:
                del self._cache[digest]


def check_method(method: str) -> None:
    """Refuse a method (or a part of one, named like a method) the caller's role lacks."""
    principal = current.get()
    if principal is not None and principal.role != ADMIN and method not in ALLOWED[principal.role]:
        raise PermissionDenied(f"role {principal.role!r} may not call {method}")


def check_project(project: str) -> None:
    principal = current.get()
    if principal is not None and not principal.may_see(project):
        raise PermissionDenied(f"this token is not allowed on project {project!r}")


def worker_id(requested: str) -> str:
    """The worker id to record: the token's name for labellers (unless `any_worker`)."""
    principal = current.get()
    if principal is None or principal.role != LABELLER or principal.any_worker:
        return requested
    if requested and requested != principal.name:
        raise PermissionDenied(
            f"this token labels as {principal.name!r}; it cannot act as {requested!r}"
        )
    return principal.name


def visible(projects: list) -> list:
    principal = current.get()
    return [p for p in projects if principal is None or principal.may_see(p.name)]
