"""SQLite: annotation ids are never used twice (AUTOINCREMENT).

A follower of StreamLabelled (the trainer, `new_labels`, an export pipeline) asks for the
annotations past the last id it got. Without AUTOINCREMENT SQLite gives a new row the largest
rowid plus one, so after an undo of the newest label the next label took the undone one's id,
and a follower already past it never got the new label (the usual undo: correct the label
just given). PostgreSQL's sequence never goes back; nothing to do there.

The table is rebuilt (copied, with its indexes): about a second per 10^6 annotations. The
next id after the upgrade is 1,000 past the largest one kept, in case the newest labels were
undone just before it.

Revision ID: 0010
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SKIP = 1000


def _rebuild(autoincrement: bool) -> bool:
    """Copy SQLite's annotations into a table with or without AUTOINCREMENT; False (and
    nothing done) on PostgreSQL."""
    if op.get_bind().dialect.name != "sqlite":
        return False
    with op.batch_alter_table(
        "annotations", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
    return True


def upgrade() -> None:
    if not _rebuild(autoincrement=True):
        return
    # the copy sets the counter to the largest id left; ids undone just before the upgrade
    # were above it, and a follower may be past them: skip well beyond (gaps are harmless)
    op.execute(f"UPDATE sqlite_sequence SET seq = seq + {SKIP} WHERE name = 'annotations'")


def downgrade() -> None:
    _rebuild(autoincrement=False)
