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


def _upgrade_to(url: str, revision: str) -> None:
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
