"""API tokens: only a token's SHA-256 digest is stored; revoking keeps the row."""

from __future__ import annotations

import json

from queue_service.errors import AlreadyExists
from queue_service.principal import Principal
from queue_service.store.database import Database


class Tokens:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.admin

    async def create(
        self, name: str, role: str, projects: list[str] | None, any_worker: bool, digest: str
    ) -> int:
        async with self.db.write() as conn:
            taken = (await conn.execute(self.q.token_named, {"n": name})).first()
            if taken is not None:
                raise AlreadyExists(f"a token named {name!r} exists; revoke it or pick a new name")
            return (
                await conn.execute(
                    self.q.insert_token,
                    {
                        "n": name,
                        "h": digest,
                        "r": role,
                        "a": any_worker,
                        "p": None if projects is None else json.dumps(sorted(projects)),
                    },
                )
            ).scalar_one()

    async def all(self) -> list[dict]:
        async with self.db.read() as conn:
            rows = await conn.execute(self.q.tokens)
            return [dict(r._mapping) for r in rows]

    async def revoke(self, name: str) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(self.q.revoke, {"n": name})
            return result.rowcount == 1

    async def find(self, digest: str) -> Principal | None:
        async with self.db.read() as conn:
            row = (await conn.execute(self.q.token, {"h": digest})).first()
        if row is None:
            return None
        projects = None if row.projects is None else frozenset(json.loads(row.projects))
        return Principal(row.name, row.role, projects, bool(row.any_worker))
