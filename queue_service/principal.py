"""Who is calling: the identity a token resolves to.

Apart from `auth` (the handlers' side) because the store reads tokens into it: the store sits
below the handlers and must not import them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    projects: frozenset[str] | None
    any_worker: bool = False

    def may_see(self, project: str) -> bool:
        return self.projects is None or project in self.projects
