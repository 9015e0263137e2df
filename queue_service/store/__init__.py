"""The queue's state in one SQL database (SQLite or PostgreSQL), as a package by concern.

`Store` (facade.py) is the one object the handlers use; it hands each operation to a
concern: projects, ingest, leases (k = 1) and shared (k > 1, with slots), priorities,
streams, progress, stats (the owner's view), tokens and runs. They share a `Database`
(database.py): the engine, its `Dialect` (sql/postgres.py or sql/sqlite.py: all SQL that
differs) and the statements both databases share (sql/queries.py), built once when the
store opens.
"""

from queue_service.store.facade import Store
from queue_service.store.ingest import ANALYZE_AFTER_ROWS, IMPORT_WORKER
from queue_service.store.leases import Leases, next_token
from queue_service.store.records import INPUT_COLUMNS, ITEM_COLUMNS
from queue_service.store.rows import (
    AnnotationRow,
    InputRow,
    ItemRow,
    PackedRows,
    ProgressRow,
    ProjectRow,
    ProjectStatsRow,
    RowBlock,
    SubmitResult,
    TrainingRunRow,
    VoteRow,
)
from queue_service.store.sql.postgres import copy_records, copy_stream
from queue_service.store.vote_table import VoteTable

__all__ = [
    "ANALYZE_AFTER_ROWS",
    "IMPORT_WORKER",
    "INPUT_COLUMNS",
    "ITEM_COLUMNS",
    "AnnotationRow",
    "InputRow",
    "ItemRow",
    "Leases",
    "PackedRows",
    "ProgressRow",
    "ProjectRow",
    "ProjectStatsRow",
    "RowBlock",
    "Store",
    "SubmitResult",
    "TrainingRunRow",
    "VoteRow",
    "VoteTable",
    "copy_records",
    "copy_stream",
    "next_token",
]
