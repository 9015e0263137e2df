"""Read-only SQLAlchemy access to a project's rows, for users who inspect the table directly.

`queue.session()` and `queue.data` work as they did in superintendent.distributed:
`session.query(queue.data).count()` counts the project's items, and each row carries
`id, input, output, priority, worker_id, inserted_at, completed_at` (times in seconds since
the epoch, from the database clock; `output` is the JSON list of labels).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, registry

from queue_service import schema


def sync_url(url: str) -> str:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}[backend]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def data_class(project: str) -> type:
    """An ORM class mapped onto one project's items, their inputs and their labels."""
    items, inputs, anns = schema.items, schema.item_inputs, schema.annotations
    latest = (
        sa.select(anns.c.labels)
        .where(anns.c.item_id == items.c.id)
        .order_by(anns.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    view = (
        sa.select(
            items.c.id,
            sa.case(
                (
                    inputs.c.kind == schema.KIND_ARRAY,
                    sa.literal("array ")
                    + inputs.c.dtype
                    + sa.literal(" [")
                    + inputs.c.shape
                    + sa.literal("]"),
                ),
                else_=inputs.c.text,
            ).label("input"),
            latest.label("output"),
            sa.case((items.c.priority > -1e308, items.c.priority), else_=None).label("priority"),
            items.c.leased_by.label("worker_id"),
            items.c.inserted_at,
            items.c.completed_at,
        )
        .select_from(items.join(inputs, inputs.c.item_id == items.c.id))
        .join(schema.projects, schema.projects.c.id == items.c.project_id)
        .where(schema.projects.c.name == project)
        .order_by(items.c.id)  # so .first() is the first item inserted, as users expect
        .subquery(f"data_{project}")
    )

    class Data:
        """One item of the project (read-only)."""

    registry().map_imperatively(Data, view, primary_key=[view.c.id])
    return Data


class Inspector:
    def __init__(self, database_url: str, project: str) -> None:
        self.engine = sa.create_engine(sync_url(database_url))
        self.data = data_class(project)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine) as session:
            yield session
