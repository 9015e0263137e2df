"""A partial index on the live leases by worker: Pop counts the worker's live leases (the
per-worker limit), and without it that count read every leased item of the project, about
two per open page, so each Pop cost grew with the crowd.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_items_held",
        "items",
        ["project_id", "leased_by", "lease_expires_at"],
        postgresql_where=sa.text("status = 1"),
        sqlite_where=sa.text("status = 1"),
    )


def downgrade() -> None:
    op.drop_index("ix_items_held", "items")
