"""Training runs record where their time went (pull, fit, score, push).

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as t:
        t.add_column(sa.Column("phases", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as t:
        t.drop_column("phases")
