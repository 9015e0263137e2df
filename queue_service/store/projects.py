"""Projects: created once, settings immutable afterwards (only the instructions change,
through this module, which keeps the cache current), so they are cached by name."""

from __future__ import annotations

import json

import sqlalchemy as sa

from queue_service.errors import AlreadyExists, NotFound
from queue_service.store.database import Database
from queue_service.store.rows import ProjectRow


def project_row(row: sa.Row) -> ProjectRow:
    return ProjectRow(
        id=row.id,
        name=row.name,
        options=tuple(json.loads(row.options)),
        multi_label=bool(row.multi_label),
        allow_other=bool(row.allow_other),
        lease_seconds=row.lease_seconds,
        model_version=row.model_version,
        created_at=row.created_at,
        overlap=row.overlap,
        max_overlap=row.max_overlap,
        review_threshold=row.review_threshold,
        reviewers=tuple(json.loads(row.reviewers)),
        instructions=row.instructions or "",
        reliability_cut=row.reliability_cut,
    )


class Projects:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.q.projects
        self._cache: dict[str, ProjectRow] = {}

    async def create(self, spec: ProjectRow, exist_ok: bool) -> tuple[ProjectRow, bool]:
        """Create a project with the settings of `spec` (its id, version and time are
        ignored); settings never change afterwards."""
        name = spec.name
        async with self.db.write() as conn:
            row = (await conn.execute(self.q.by_name, {"n": name})).first()
            if row is not None:
                existing = project_row(row)
                same = existing.settings() == spec.settings()
                if exist_ok and same:
                    return existing, False
                why = "" if same else " with different settings"
                raise AlreadyExists(f"project {name!r} already exists{why}")
            row = (
                await conn.execute(
                    self.q.insert,
                    {
                        "n": name,
                        "o": json.dumps(list(spec.options)),
                        "m": spec.multi_label,
                        "a": spec.allow_other,
                        "l": spec.lease_seconds,
                        "k": spec.overlap,
                        "kmax": spec.max_overlap,
                        "rt": spec.review_threshold,
                        "rv": json.dumps(list(spec.reviewers)),
                        "ins": spec.instructions or None,
                        "rc": spec.reliability_cut,
                    },
                )
            ).one()
            return project_row(row), True

    async def get(self, name: str, fresh: bool = False) -> ProjectRow:
        """A project by name; settings are immutable, so a cached copy serves all but
        `model_version` (pass fresh=True to read that)."""
        if not fresh and name in self._cache:
            return self._cache[name]
        async with self.db.read() as conn:
            row = (await conn.execute(self.q.by_name, {"n": name})).first()
        if row is None:
            raise NotFound(f"project {name!r} does not exist; create it with CreateProject")
        project = project_row(row)
        self._cache[name] = project
        return project

    async def all(self) -> list[ProjectRow]:
        async with self.db.read() as conn:
            rows = await conn.execute(self.q.all)
            return [project_row(r) for r in rows]

    async def set_instructions(self, project: ProjectRow, instructions: str) -> ProjectRow:
        """Replace a project's instructions (markdown; empty removes them)."""
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    self.q.set_instructions, {"ins": instructions or None, "p": project.id}
                )
            ).one()
        updated = project_row(row)
        self._cache[updated.name] = updated
        return updated
