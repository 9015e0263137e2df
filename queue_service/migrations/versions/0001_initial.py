"""Initial schema: projects, batches, items (narrow), item_inputs, annotations.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("multi_label", sa.Boolean, nullable=False),
        sa.Column("allow_other", sa.Boolean, nullable=False),
        sa.Column("lease_seconds", sa.Integer, nullable=False),
        sa.Column("model_version", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("project_id", "key", name="uq_batches_project_key"),
    )
    op.create_table(
        "items",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("batch_id", sa.Integer, nullable=True),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("priority", sa.Double, nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("leased_by", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.Double, nullable=True),
        sa.Column("inserted_at", sa.Double, nullable=False),
        sa.Column("completed_at", sa.Double, nullable=True),
    )
    # Pops scan only available rows, already in serving order.
    op.create_index(
        "ix_items_pop",
        "items",
        ["project_id", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("status = 0"),
        sqlite_where=sa.text("status = 0"),
    )
    # Expired leases are found without touching available or done rows.
    op.create_index(
        "ix_items_leased",
        "items",
        ["project_id", "lease_expires_at"],
        postgresql_where=sa.text("status = 1"),
        sqlite_where=sa.text("status = 1"),
    )
    op.create_index("ix_items_project_status", "items", ["project_id", "status"])
    op.create_index("ix_items_batch", "items", ["batch_id"])
    op.create_table(
        "item_inputs",
        sa.Column("item_id", BigId, sa.ForeignKey("items.id"), primary_key=True),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("dtype", sa.String(16), nullable=True),
        sa.Column("shape", sa.String(200), nullable=True),
        sa.Column("data", sa.LargeBinary, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("metadata", sa.Text, nullable=True),
    )
    op.create_table(
        "annotations",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("item_id", BigId, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("ix_annotations_project", "annotations", ["project_id", "id"])
    op.create_index("ix_annotations_worker", "annotations", ["project_id", "worker_id", "id"])
    op.create_index("ix_annotations_item", "annotations", ["item_id"])


def downgrade() -> None:
    op.drop_table("annotations")
    op.drop_table("item_inputs")
    op.drop_table("items")
    op.drop_table("batches")
    op.drop_table("projects")
