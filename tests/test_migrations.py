"""A database made by an older release upgrades in place: data kept, new settings default."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from labelgrid import QueueClient
from queue_service import db
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query


def _upgrade_to(url: str, revision: str, *more: str) -> None:
    """A database at `revision` with project 'old' and two items (and `more` statements)."""

    async def go() -> None:
        engine = db.create_engine(url)

        def upgrade(connection: sa.Connection) -> None:
            config = Config()
            config.set_main_option("script_location", str(db.MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        async with engine.begin() as conn:
            await conn.run_sync(upgrade)
            await conn.execute(
                sa.text(
                    "INSERT INTO projects (id, name, options, multi_label, allow_other, "
                    "lease_seconds, model_version, created_at) "
                    "VALUES (1, 'old', '[\"a\", \"b\"]', false, false, 600, 0, 0)"
                )
            )
            for i in (1, 2):
                await conn.execute(
                    sa.text(
                        "INSERT INTO items (id, project_id, status, priority, inserted_at) "
                        f"VALUES ({i}, 1, 0, {10 - i}, 0)"
                    )
                )
                await conn.execute(
                    sa.text(
                        f"INSERT INTO item_inputs (item_id, kind, text) VALUES ({i}, 2, 'item {i}')"
                    )
                )
            for statement in more:
                await conn.execute(sa.text(statement))
        await engine.dispose()

    asyncio.run(go())


def test_a_release_0003_database_upgrades_and_serves(database_url: str) -> None:
    _upgrade_to(database_url, "0003")
    service = ServiceProcess(database_url).start()  # migrates to head on start
    try:
        with QueueClient(service.address) as client:
            project = client.get_project("old")
            assert project.instructions == ""  # 0006: a new nullable column
            assert (project.overlap, project.max_overlap, list(project.options)) == (
                1,
                1,
                ["a", "b"],
            )
            [item] = client.pop("old", "w")
            assert (item.id, item.input) == (1, "item 1")
            client.submit("old", item, "a", "w")
            assert client.progress("old").labelled == 1
            assert client.agreement("old").annotations == 1
    finally:
        service.kill()
    assert query(database_url, "SELECT stage, needed FROM items ORDER BY id") == [
        (0, None),
        (0, None),
    ]
    assert query(database_url, "SELECT kind FROM annotations") == [(0,)]


def test_a_release_0009_database_never_reuses_an_undone_annotation_id(database_url: str) -> None:
    """0010 rebuilds SQLite's annotations with AUTOINCREMENT, keeping the rows and their
    ids: a label given after an undo of the newest one gets a new id, so a follower past the
    undone id still gets it."""
    _upgrade_to(
        database_url,
        "0009",
        "UPDATE items SET status = 2 WHERE id = 1",
        "INSERT INTO annotations (project_id, item_id, worker_id, labels, created_at, kind) "
        "VALUES (1, 1, 'old', '[\"a\"]', 0, 0)",
    )
    service = ServiceProcess(database_url).start()
    try:
        with QueueClient(service.address) as client:
            [item] = client.pop("old", "w")
            client.submit("old", item, "a", "w")
            cursor = [r for c in client.stream_labelled("old") for r in c.items][-1].annotation_id
            # SQLite's counter starts 1,000 past the largest id kept (ids undone just before)
            assert cursor > (1001 if database_url.startswith("sqlite") else 1)
            undone, _ = client.undo("old", "w")
            client.submit("old", undone, "b", "w")
            later = [
                (r.annotation_id, r.item_id, list(r.labels))
                for c in client.stream_labelled("old", cursor)
                for r in c.items
            ]
            assert [(i, labels) for _, i, labels in later] == [(2, ["b"])]
            assert later[0][0] > cursor
    finally:
        service.kill()
    rows = query(database_url, "SELECT id, item_id, worker_id FROM annotations ORDER BY id")
    assert rows == [(1, 1, "old"), (later[0][0], 2, "w")]
