"""Table definitions. The hot `items` row stays narrow; input bytes live in `item_inputs`.

Item status: 0 available, 1 leased, 2 done, 3 waiting for an adjudicator. With overlap
k > 1 "available" means a slot is free: `assignments` records who holds or held each of an
item's k slots (never twice the same worker), and the item is done when k of them are.
Times are seconds since the epoch taken from the database clock. `priority` is -infinity
for items never ranked, so "priority DESC, id ASC" is the one serving order on every backend.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite only auto-assigns INTEGER PRIMARY KEY columns; PostgreSQL gets BIGINT identity.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

AVAILABLE, LEASED, DONE, REVIEW = 0, 1, 2, 3
# assignment states (overlap > 1)
LIVE, SUBMITTED, EXPIRED, RELEASED = 0, 1, 2, 3
# item stages and annotation kinds: a review item waits for an adjudicator's final label; a
# relabel item is a completed item a model asked one more label for (UpdatePriorities)
NORMAL, IN_REVIEW, RELABEL = 0, 1, 2
LABEL, ADJUDICATION = 0, 1
UNRANKED = float("-inf")

KIND_ARRAY, KIND_TEXT, KIND_URI, KIND_JSON = 1, 2, 3, 4

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("multi_label", sa.Boolean, nullable=False),
    sa.Column("allow_other", sa.Boolean, nullable=False),
    sa.Column("lease_seconds", sa.Integer, nullable=False),
    sa.Column("model_version", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    # annotations per item; items whose k labels agree less than review_threshold get one
    # more (up to max_overlap) or, when the project names reviewers, an adjudicator's label
    sa.Column("overlap", sa.Integer, nullable=False, server_default="1"),
    sa.Column("max_overlap", sa.Integer, nullable=False, server_default="1"),
    sa.Column("review_threshold", sa.Double, nullable=False, server_default="0"),
    sa.Column("reviewers", sa.Text, nullable=False, server_default="[]"),
    # markdown shown to labellers (migration 0006); NULL means none
    sa.Column("instructions", sa.Text, nullable=True),
    # workers estimated less reliable than this get extra-round items last (0 = off; 0008)
    sa.Column("reliability_cut", sa.Double, nullable=False, server_default="0"),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.UniqueConstraint("project_id", "key", name="uq_batches_project_key"),
)

# `items` and `item_inputs` carry no foreign keys on PostgreSQL (migration 0005): only
# add_items writes them, and per-row checks doubled the cost of a bulk COPY.
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("batch_id", sa.Integer, nullable=True),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("priority", sa.Double, nullable=False),
    sa.Column("lease_token", sa.String(64), nullable=True),
    sa.Column("leased_by", sa.String(200), nullable=True),
    sa.Column("lease_expires_at", sa.Double, nullable=True),
    sa.Column("inserted_at", sa.Double, nullable=False),
    sa.Column("completed_at", sa.Double, nullable=True),
    sa.Column("stage", sa.SmallInteger, nullable=False, server_default="0"),
    # annotations this item needs when it differs from the project's overlap (review)
    sa.Column("needed", sa.Integer, nullable=True),
)

item_inputs = sa.Table(
    "item_inputs",
    metadata,
    sa.Column("item_id", BigId, primary_key=True),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("dtype", sa.String(16), nullable=True),
    sa.Column("shape", sa.String(200), nullable=True),
    sa.Column("data", sa.LargeBinary, nullable=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("metadata", sa.Text, nullable=True),
)

annotations = sa.Table(
    "annotations",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("item_id", BigId, sa.ForeignKey("items.id"), nullable=False),
    sa.Column("worker_id", sa.String(200), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("lease_token", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False, server_default="0"),
    # an id is never used twice, even after its row is deleted (an undo): followers of
    # StreamLabelled read past the last id they got (migration 0010)
    sqlite_autoincrement=True,
)

assignments = sa.Table(
    "assignments",
    metadata,
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

# each worker's Dawid-Skene reliability in a project (migration 0008; queue_service/routing.py)
worker_reliability = sa.Table(
    "worker_reliability",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("worker_id", sa.String(200), primary_key=True),
    sa.Column("reliability", sa.Double, nullable=False),
    sa.Column("compared", sa.Integer, nullable=False),
    sa.Column("upto", sa.BigInteger, nullable=False),
    sa.Column("computed_at", sa.Double, nullable=False),
)

training_runs = sa.Table(
    "training_runs",
    metadata,
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
    # where the run's time went: JSON [[name, seconds], ...] (migration 0007); NULL: not given
    sa.Column("phases", sa.Text, nullable=True),
)
