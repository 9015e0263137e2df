"""Relabel requests and annotator-aware routing (issue 18): the project's reliability cut,
a partial index on the items in a model-requested extra round (stage 2), and each worker's
estimated reliability per project.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as t:
        t.add_column(sa.Column("reliability_cut", sa.Double, nullable=False, server_default="0"))
    # the open relabel requests of a project, found without scanning its items
    op.create_index(
        "ix_items_relabel",
        "items",
        ["project_id"],
        sqlite_where=sa.text("stage = 2"),
        postgresql_where=sa.text("stage = 2"),
    )
    op.create_table(
        "worker_reliability",
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("worker_id", sa.String(200), primary_key=True),
        sa.Column("reliability", sa.Double, nullable=False),
        sa.Column("compared", sa.Integer, nullable=False),
        # the newest annotation id the estimate had seen (an older estimate never overwrites)
        sa.Column("upto", sa.BigInteger, nullable=False),
        sa.Column("computed_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("worker_reliability")
    op.drop_index("ix_items_relabel", "items")
    with op.batch_alter_table("projects") as t:
        t.drop_column("reliability_cut")
