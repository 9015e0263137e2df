"""Several labels per item: overlap settings, per-worker assignments, review stage.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("projects") as t:
        t.add_column(sa.Column("overlap", sa.Integer, nullable=False, server_default="1"))
        t.add_column(sa.Column("max_overlap", sa.Integer, nullable=False, server_default="1"))
        t.add_column(sa.Column("review_threshold", sa.Double, nullable=False, server_default="0"))
        t.add_column(sa.Column("reviewers", sa.Text, nullable=False, server_default="[]"))
    with op.batch_alter_table("items") as t:
        t.add_column(sa.Column("stage", sa.SmallInteger, nullable=False, server_default="0"))
        t.add_column(sa.Column("needed", sa.Integer, nullable=True))
    with op.batch_alter_table("annotations") as t:
        t.add_column(sa.Column("kind", sa.SmallInteger, nullable=False, server_default="0"))
    op.create_table(
        "assignments",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("item_id", BigId, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("item_id", "worker_id", name="uq_assignments_item_worker"),
    )
    op.create_index("ix_assignments_live", "assignments", ["project_id", "state", "expires_at"])
    op.create_index("ix_assignments_worker", "assignments", ["project_id", "worker_id", "state"])


def downgrade() -> None:
    op.drop_table("assignments")
    with op.batch_alter_table("annotations") as t:
        t.drop_column("kind")
    with op.batch_alter_table("items") as t:
        t.drop_column("needed")
        t.drop_column("stage")
    with op.batch_alter_table("projects") as t:
        for name in ("reviewers", "review_threshold", "max_overlap", "overlap"):
            t.drop_column(name)
