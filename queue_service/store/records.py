"""Table records for bulk inserts, shared by the general insert and each dialect's own."""

from __future__ import annotations

from collections.abc import Sequence

from queue_service.schema import AVAILABLE, DONE, UNRANKED

ITEM_COLUMNS = (
    "id",
    "project_id",
    "batch_id",
    "status",
    "priority",
    "inserted_at",
    "completed_at",
)
INPUT_COLUMNS = ("item_id", "kind", "dtype", "shape", "data", "text", "metadata")


def item_records(
    project_id: int,
    batch_id: int | None,
    ids: list[int],
    labels: Sequence[list[str] | None],
    priorities: list[float] | None,
    now: float,
) -> list[tuple]:
    """`items` records: labelled items are done on arrival, the others available."""
    status = [DONE if lab else AVAILABLE for lab in labels]
    prio = priorities if priorities is not None else [UNRANKED] * len(ids)
    return [
        (i, project_id, batch_id, s, p, now, now if s == DONE else None)
        for i, s, p in zip(ids, status, prio, strict=True)
    ]
