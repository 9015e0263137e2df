"""Project instructions: markdown shown to labellers by the web app.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as t:
        t.add_column(sa.Column("instructions", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as t:
        t.drop_column("instructions")
