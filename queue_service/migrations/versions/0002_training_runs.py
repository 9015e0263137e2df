"""Training runs: the history of each project's model (score, labels used, version).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("score", sa.Double, nullable=True),
        sa.Column("score_std", sa.Double, nullable=True),
        sa.Column("n_labels", sa.BigInteger, nullable=False),
        sa.Column("n_scored", sa.BigInteger, nullable=False),
        sa.Column("model_version", sa.BigInteger, nullable=False),
        sa.Column("seconds", sa.Double, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("trainer", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.Double, nullable=False),
    )
    op.create_index("ix_training_runs_project", "training_runs", ["project_id", "id"])


def downgrade() -> None:
    op.drop_table("training_runs")
