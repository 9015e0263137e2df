"""SQLite: annotation ids are never used twice (AUTOINCREMENT).

A follower of StreamLabelled (the trainer, `new_labels`, an export pipeline) asks for the
annotations past the last id it got. Without AUTOINCREMENT SQLite gives a new row the largest
rowid plus one, so after an undo of the newest label the next label took the undone one's id,
and a follower already past it never got the new label (the usual undo: correct the label
just given). PostgreSQL's sequence never goes back; nothing to do there.

The table is rebuilt (copied, with its indexes): about a second per 10^6 annotations.

Revision ID: 0010
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "annotations", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "annotations", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ):
        pass
