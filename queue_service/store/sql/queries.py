"""The statements both databases share, grouped by concern and built once per store with
the dialect's clock and lock clauses spliced in (so no concern assembles SQL per call)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from queue_service.schema import (
    ADJUDICATION,
    AVAILABLE,
    DONE,
    EXPIRED,
    IN_REVIEW,
    LABEL,
    LEASED,
    LIVE,
    NORMAL,
    RELABEL,
    RELEASED,
    REVIEW,
    SUBMITTED,
)
from queue_service.store.sql import Dialect

PROJECT_COLS = (
    "id, name, options, multi_label, allow_other, lease_seconds, model_version, created_at, "
    "overlap, max_overlap, review_threshold, reviewers, instructions, reliability_cut"
)
RUN_COLS = (
    "status, message, score, score_std, n_labels, n_scored, model_version, seconds, "
    "started_at, trainer, phases"
)
INPUT_COLS = "kind, dtype, shape, data, text, metadata"


def expanding(sql: str, name: str = "ids") -> TextClause:
    """A statement whose `IN :ids` takes a list."""
    return sa.text(sql).bindparams(sa.bindparam(name, expanding=True))


class Queries:
    """All shared statements of one store, one attribute group per concern."""

    def __init__(self, d: Dialect) -> None:
        self.projects = ProjectQueries(d)
        self.ingest = IngestQueries(d)
        self.single = SingleQueries(d)
        self.shared = SharedQueries(d)
        self.relabels = RelabelQueries(d)
        self.reliability = ReliabilityQueries(d)
        self.reads = ReadQueries(d)
        self.admin = AdminQueries(d)
        self.stats = StatsQueries(d)
        self.inputs = expanding(
            f"SELECT item_id, {INPUT_COLS} FROM item_inputs WHERE item_id IN :ids"
        )
        self.delete_annotation = text("DELETE FROM annotations WHERE id = :a")
        self.lease_expiry = text(f"SELECT {d.now} + :l")


class ProjectQueries:
    def __init__(self, d: Dialect) -> None:
        self.by_name = text(f"SELECT {PROJECT_COLS} FROM projects WHERE name = :n")
        self.insert = text(
            "INSERT INTO projects (name, options, multi_label, allow_other, "
            "lease_seconds, model_version, created_at, overlap, max_overlap, "
            "review_threshold, reviewers, instructions, reliability_cut) VALUES (:n, :o, :m, "
            f":a, :l, 0, {d.now}, :k, :kmax, :rt, :rv, :ins, :rc) RETURNING {PROJECT_COLS}"
        )
        self.set_instructions = text(
            f"UPDATE projects SET instructions = :ins WHERE id = :p RETURNING {PROJECT_COLS}"
        )
        self.all = text(f"SELECT {PROJECT_COLS} FROM projects ORDER BY id")
        # NO KEY UPDATE serialises priority updates without blocking the foreign-key check
        # (KEY SHARE) of a Submit that holds an item row this update waits for: FOR UPDATE
        # here deadlocked the two
        self.model_version = text(f"SELECT model_version FROM projects WHERE id = :p {d.key_lock}")
        self.set_model_version = text("UPDATE projects SET model_version = :v WHERE id = :p")


class IngestQueries:
    def __init__(self, d: Dialect) -> None:
        self.batch = text(
            f"SELECT id, digest FROM batches WHERE project_id = :p AND key = :k {d.lock}"
        )
        self.batch_items = text("SELECT id FROM items WHERE batch_id = :b ORDER BY id")
        self.insert_batch = text(
            "INSERT INTO batches (project_id, key, digest, count, created_at) "
            f"VALUES (:p, :k, :d, :c, {d.now}) RETURNING id"
        )
        self.now = text(f"SELECT {d.now}")
        self.insert_imported = text(
            "INSERT INTO annotations (project_id, item_id, worker_id, labels, "
            "created_at) VALUES (:p, :i, :w, :l, :t)"
        )


class SingleQueries:
    """k = 1: the lease is on the items row."""

    def __init__(self, d: Dialect) -> None:
        # a worker's live leases, oldest first (a returning labeller gets them back)
        self.live = text(
            "SELECT id, lease_token AS token, lease_expires_at AS expires_at, priority "
            f"FROM items WHERE project_id = :p AND status = {LEASED} AND leased_by = :w "
            f"AND lease_expires_at > {d.instant} ORDER BY lease_expires_at, priority DESC, id"
        )
        # expired leases go back to the pool first (their token is kept, so a late submit
        # is still accepted as long as nobody else has taken the item)
        self.reclaim = text(
            f"UPDATE items SET status = {AVAILABLE} WHERE id IN (SELECT id FROM items "
            f"WHERE project_id = :p AND status = {LEASED} AND lease_expires_at <= {d.instant}"
            f" {d.skip})"
        )
        self.lease = text(
            f"UPDATE items SET status = {LEASED}, lease_token = :t, leased_by = :w, "
            f"lease_expires_at = {d.now} + :l WHERE id IN (SELECT id FROM items "
            f"WHERE project_id = :p AND status = {AVAILABLE} "
            f"ORDER BY priority DESC, id LIMIT :n {d.skip}) "
            "RETURNING id, priority, lease_expires_at"
        )
        self.held = text(
            "SELECT COUNT(*) FROM items WHERE project_id = :p AND status = "
            f"{LEASED} AND leased_by = :w AND lease_expires_at > {d.instant}"
        )
        self.lock_item = text(
            "SELECT status, lease_token, leased_by FROM items "
            f"WHERE id = :i AND project_id = :p {d.lock}"
        )
        self.submitted = text(
            "SELECT id, labels FROM annotations WHERE item_id = :i AND "
            "worker_id = :w AND lease_token = :t ORDER BY id DESC LIMIT 1"
        )
        self.annotate = text(
            "INSERT INTO annotations (project_id, item_id, worker_id, labels, "
            f"lease_token, created_at) VALUES (:p, :i, :w, :l, :t, {d.now}) "
            "RETURNING id"
        )
        self.close_item = text(
            f"UPDATE items SET status = {DONE}, completed_at = {d.now}, "
            "lease_token = NULL, lease_expires_at = NULL WHERE id = :i"
        )
        self.find = text(
            "SELECT id, priority, lease_expires_at FROM items WHERE project_id = :p AND "
            f"status = {LEASED} AND lease_token = :t AND leased_by = :w"
        )
        self.release = text(
            f"UPDATE items SET status = {AVAILABLE}, lease_token = NULL, leased_by = NULL, "
            "lease_expires_at = NULL WHERE id = :i"
        )
        self.newest = text(
            "SELECT id, item_id, labels FROM annotations WHERE project_id = :p AND "
            f"worker_id = :w ORDER BY id DESC LIMIT 1 {d.lock}"
        )
        self.reopen = text(
            f"UPDATE items SET status = {LEASED}, lease_token = :t, leased_by = :w, "
            f"lease_expires_at = {d.now} + :l, completed_at = NULL "
            "WHERE id = :i RETURNING id, priority, lease_expires_at"
        )


class SharedQueries:
    """k > 1: leases are rows of `assignments`; the item's status is derived from them."""

    def __init__(self, d: Dialect) -> None:
        # a worker's live assignments, oldest first (a returning labeller gets them back)
        self.live = text(
            "SELECT a.item_id AS id, a.token, a.expires_at, it.priority, it.stage "
            "FROM assignments a JOIN items it ON it.id = a.item_id "
            f"WHERE a.project_id = :p AND a.worker_id = :w AND a.state = {LIVE} "
            f"AND a.expires_at > {d.instant} ORDER BY a.expires_at, it.priority DESC, a.item_id"
        )
        self.due = text(
            "SELECT DISTINCT item_id FROM assignments WHERE project_id = :p AND "
            f"state = {LIVE} AND expires_at <= {d.instant}"
        )
        self.lock_items = expanding(f"SELECT id FROM items WHERE id IN :ids ORDER BY id {d.skip}")
        self.expire = text(
            f"UPDATE assignments SET state = {EXPIRED} WHERE item_id = :i AND "
            f"state = {LIVE} AND expires_at <= {d.instant}"
        )
        self.slots = text(
            f"SELECT it.stage, it.needed, SUM(CASE WHEN a.state = {LIVE} THEN 1 ELSE 0 "
            f"END) AS live, SUM(CASE WHEN a.state = {SUBMITTED} THEN 1 ELSE 0 END) AS done "
            "FROM items it LEFT JOIN assignments a ON a.item_id = it.id "
            "WHERE it.id = :i GROUP BY it.stage, it.needed"
        )
        self.judged = text(
            f"SELECT COUNT(*) FROM annotations WHERE item_id = :i AND kind = {ADJUDICATION}"
        )
        self.votes = text("SELECT labels FROM annotations WHERE item_id = :i AND kind = :k")
        settle = (
            "UPDATE items SET status = :s, stage = :g, needed = :n, completed_at = {} WHERE id = :i"
        )
        self.settle = {True: text(settle.format(d.now)), False: text(settle.format("NULL"))}
        self.held = text(
            "SELECT COUNT(*) FROM assignments WHERE project_id = :p AND "
            f"worker_id = :w AND state = {LIVE} AND expires_at > {d.instant}"
        )
        # never the same item twice to one worker; an adjudicator whose lease expired may
        # take the item up again (a project may have a single reviewer): keyed by
        # (status, whether an expired assignment of this worker may be taken again)
        fresh = (
            "NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = items.id AND "
            "a.worker_id = :w{})"
        )
        self.pick = {
            (status, again): text(
                "SELECT id, priority, stage FROM items WHERE project_id = :p AND "
                f"status = {status} AND "
                f"{fresh.format(f' AND a.state <> {EXPIRED}' if again else '')} "
                f"ORDER BY priority DESC, id LIMIT :n {d.skip}"
            )
            for status, again in ((REVIEW, True), (REVIEW, False), (AVAILABLE, False))
        }
        # annotator-aware routing (store/routing.py): a worker below the project's
        # reliability cut takes available items in their first round before the ones a
        # model asked one more label for; keyed by whether the pick is of relabel items
        self.pick_available = {
            relabel: text(
                "SELECT id, priority, stage FROM items WHERE project_id = :p AND "
                f"status = {AVAILABLE} AND stage {'=' if relabel else '<>'} {RELABEL} AND "
                f"{fresh.format('')} ORDER BY priority DESC, id LIMIT :n {d.skip}"
            )
            for relabel in (False, True)
        }
        # overlap 1 with max_overlap > 1 (ProjectRow.single_first) serves like overlap 1: a
        # worker who skipped an item or let its lease expire may take it again (`reclaim`
        # clears that old assignment first); one who holds or labelled it may not. Keyed as
        # `pick` (by status) and `pick_available` (by whether the pick is of relabel items)
        held_or_done = f" AND a.state IN ({LIVE}, {SUBMITTED})"
        self.pick_first = {
            status: text(
                "SELECT id, priority, stage FROM items WHERE project_id = :p AND "
                f"status = {status} AND {fresh.format(held_or_done)} "
                f"ORDER BY priority DESC, id LIMIT :n {d.skip}"
            )
            for status in (REVIEW, AVAILABLE)
        }
        self.pick_available_first = {
            relabel: text(
                "SELECT id, priority, stage FROM items WHERE project_id = :p AND "
                f"status = {AVAILABLE} AND stage {'=' if relabel else '<>'} {RELABEL} AND "
                f"{fresh.format(held_or_done)} ORDER BY priority DESC, id LIMIT :n {d.skip}"
            )
            for relabel in (False, True)
        }
        self.reclaim = expanding(
            "DELETE FROM assignments WHERE item_id IN :ids AND worker_id = :w "
            f"AND state IN ({EXPIRED}, {RELEASED})"
        )
        self.reliability = text(
            "SELECT reliability FROM worker_reliability WHERE project_id = :p AND worker_id = :w"
        )
        self.retake = expanding(
            "DELETE FROM assignments WHERE item_id IN :ids AND worker_id = :w "
            f"AND state = {EXPIRED}"
        )
        self.assign = text(
            "INSERT INTO assignments (project_id, item_id, worker_id, token, state, "
            f"expires_at, created_at) VALUES (:p, :i, :w, :t, {LIVE}, :e, {d.now})"
        )
        # a new lease only fills a slot: the item is LEASED once all of its slots are taken
        # (what settling would decide, in one statement for every picked item)
        self.fill = expanding(
            f"UPDATE items SET status = CASE WHEN stage = {IN_REVIEW} THEN {LEASED} "
            "WHEN (SELECT COUNT(*) FROM assignments a WHERE a.item_id = items.id AND "
            f"a.state IN ({LIVE}, {SUBMITTED})) >= COALESCE(needed, :k) THEN {LEASED} "
            "ELSE status END WHERE id IN :ids"
        )
        self.others = expanding(
            "SELECT item_id, worker_id, labels FROM annotations WHERE item_id IN :ids "
            f"AND kind = {LABEL} ORDER BY id"
        )
        self.lock_item = text(
            f"SELECT status, stage, priority FROM items WHERE id = :i AND project_id = :p {d.lock}"
        )
        self.assignment = text(
            "SELECT id, token, state FROM assignments WHERE item_id = :i AND worker_id = :w"
        )
        self.submitted = text(
            "SELECT id, labels FROM annotations WHERE item_id = :i AND "
            "worker_id = :w ORDER BY id DESC LIMIT 1"
        )
        self.annotate = text(
            "INSERT INTO annotations (project_id, item_id, worker_id, labels, "
            f"lease_token, created_at, kind) VALUES (:p, :i, :w, :l, :t, {d.now}, :k) "
            "RETURNING id"
        )
        self.mark_submitted = text(f"UPDATE assignments SET state = {SUBMITTED} WHERE id = :a")
        self.mark_released = text(f"UPDATE assignments SET state = {RELEASED} WHERE id = :a")
        self.find = text(
            "SELECT a.item_id, a.expires_at, it.priority, it.stage FROM assignments a "
            "JOIN items it ON it.id = a.item_id WHERE a.project_id = :p AND "
            f"a.worker_id = :w AND a.token = :t AND a.state = {LIVE}"
        )
        # the newest annotation of a worker in a project (what Undo reopens)
        self.newest = text(
            "SELECT id, item_id, labels FROM annotations WHERE project_id = :p AND "
            "worker_id = :w ORDER BY id DESC LIMIT 1"
        )
        self.relive = text(
            f"UPDATE assignments SET state = {LIVE}, token = :t, expires_at = :e WHERE id = :a"
        )


class RelabelQueries:
    """Relabel requests (store/relabels.py): completed items a model asked one more label
    for, reopened as stage RELABEL; and withdrawn when a later call does not ask again."""

    def __init__(self, d: Dialect) -> None:
        self.matched = expanding("SELECT COUNT(*) FROM items WHERE project_id = :p AND id IN :ids")
        self.lock = expanding(
            "SELECT id, status, stage FROM items WHERE project_id = :p AND id IN :ids "
            f"ORDER BY id {d.lock}"
        )
        # per item: labels in (submitted slots) and live leases (not past their time)
        self.slots = expanding(
            f"SELECT item_id, SUM(CASE WHEN state = {SUBMITTED} THEN 1 ELSE 0 END) AS done, "
            f"SUM(CASE WHEN state = {LIVE} AND expires_at > {d.instant} THEN 1 ELSE 0 END) "
            "AS live FROM assignments WHERE item_id IN :ids GROUP BY item_id"
        )
        # items whose label is final: an adjudication, or a label imported with the data
        self.final = expanding(
            "SELECT DISTINCT item_id FROM annotations WHERE item_id IN :ids AND "
            f"(kind = {ADJUDICATION} OR worker_id = :imp)"
        )
        self.reopen = text(
            f"UPDATE items SET status = {AVAILABLE}, stage = {RELABEL}, needed = :n, "
            "priority = :pr, completed_at = NULL WHERE id = :i"
        )
        self.reprioritise = text("UPDATE items SET priority = :pr WHERE id = :i")
        # the project's open requests (the partial index ix_items_relabel)
        self.open = text(f"SELECT id FROM items WHERE project_id = :p AND stage = {RELABEL}")
        self.expire = expanding(
            f"UPDATE assignments SET state = {EXPIRED} WHERE item_id IN :ids AND "
            f"state = {LIVE} AND expires_at <= {d.instant}"
        )
        # back to an ordinary item needing the labels it has (settle then closes it)
        self.withdraw = text(f"UPDATE items SET stage = {NORMAL}, needed = :n WHERE id = :i")


class ReliabilityQueries:
    """Each worker's estimated reliability per project (queue_service/routing.py)."""

    def __init__(self, d: Dialect) -> None:
        # an estimate from an older snapshot never overwrites a newer one (replicas)
        self.upsert = text(
            "INSERT INTO worker_reliability (project_id, worker_id, reliability, compared, "
            f"upto, computed_at) VALUES (:p, :w, :r, :c, :u, {d.now}) "
            "ON CONFLICT (project_id, worker_id) DO UPDATE SET reliability = "
            "excluded.reliability, compared = excluded.compared, upto = excluded.upto, "
            "computed_at = excluded.computed_at WHERE worker_reliability.upto <= excluded.upto"
        )
        self.all = text(
            "SELECT worker_id, reliability, compared, upto FROM worker_reliability "
            "WHERE project_id = :p ORDER BY worker_id"
        )


class ReadQueries:
    """Streams and counts: read-only, in one snapshot where it matters."""

    def __init__(self, d: Dialect) -> None:
        labelled = (
            "SELECT a.id, a.item_id, a.labels, a.worker_id, a.created_at{} "
            "FROM annotations a{} WHERE a.project_id = :p AND a.id > :c AND a.id <= :w "
            "ORDER BY a.id LIMIT :n"
        )
        self.labelled = {
            False: text(labelled.format("", "")),
            True: text(
                labelled.format(
                    ", i.kind, i.dtype, i.shape, i.data, i.text, i.metadata",
                    " JOIN item_inputs i ON i.item_id = a.item_id",
                )
            ),
        }
        # export by item: the last of the next n items of a project (a range on the
        # primary key), then the annotations of the items up to it (a range on
        # ix_annotations_item) with their metadata. `+project_id` keeps the planners off the
        # project indexes: on SQLite they made each chunk scan and sort the whole project
        # (0.4 s a chunk at 10^6 items, against 4 ms).
        self.items_upto = text(
            "SELECT MAX(id) FROM (SELECT id FROM items WHERE +project_id = :p AND id > :c "
            "ORDER BY id LIMIT :n) t"
        )
        by_item = (
            "SELECT a.id, a.item_id, a.labels, a.worker_id, a.created_at, i.metadata{} "
            "FROM annotations a LEFT JOIN item_inputs i ON i.item_id = a.item_id "
            "WHERE +a.project_id = :p AND a.item_id > :c AND a.item_id <= :u "
            "ORDER BY a.item_id, a.id"
        )
        self.labelled_by_item = {
            False: text(by_item.format("")),
            True: text(by_item.format(", i.kind, i.dtype, i.shape, i.data, i.text")),
        }
        # a page of a project's votes (store/vote_table.py), past annotation id :c
        self.votes = text(
            "SELECT a.id, a.item_id, a.worker_id, a.labels, a.kind, a.created_at, "
            f"CASE WHEN it.status = {DONE} THEN 1 ELSE 0 END AS done FROM annotations a "
            "JOIN items it ON it.id = a.item_id WHERE a.project_id = :p AND a.id > :c "
            "ORDER BY a.id LIMIT :n"
        )
        # items a model asked one more label for (stage RELABEL) have labels: left out
        self.unlabelled_ids = text(
            "SELECT id, priority FROM items WHERE project_id = :p AND "
            f"status <> {DONE} AND stage <> {RELABEL} AND id > :c ORDER BY id LIMIT :n"
        )
        self.unlabelled = text(
            "SELECT it.id, it.priority, i.kind, i.dtype, i.shape, i.data, i.text, "
            "i.metadata FROM items it JOIN item_inputs i ON i.item_id = it.id "
            f"WHERE it.project_id = :p AND it.status <> {DONE} AND it.stage <> {RELABEL} "
            "AND it.id > :c AND i.item_id > :c ORDER BY it.id LIMIT :n"
        )
        # counted from the (project_id, status) index alone, in its order (the expiry was a
        # CASE over every item's row and a sort: 0.43 s at 10^6 items, bench/watchers.py)
        self.status_counts = text(
            "SELECT status, COUNT(*) AS n FROM items WHERE project_id = :p GROUP BY status"
        )
        # the leased items whose lease is up (they count as available), from the partial
        # index of leased items
        self.expired_leases = text(
            f"SELECT COUNT(*) FROM items WHERE project_id = :p AND status = {LEASED} "
            f"AND lease_expires_at <= {d.instant}"
        )
        # the same for a project whose leases are assignments and whose leased items have
        # one slot open at a time (overlap 1 with max_overlap > 1): leased until its live
        # assignment's time is up, as an overlap-1 item is until its lease's
        self.expired_assignments = text(
            f"SELECT COUNT(*) FROM items WHERE project_id = :p AND status = {LEASED} "
            "AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = items.id AND "
            f"a.state = {LIVE} AND a.expires_at > {d.instant})"
        )
        self.worker_counts = text(
            "SELECT worker_id, COUNT(*) FROM annotations WHERE project_id = :p GROUP BY worker_id"
        )
        self.label_counts = text(
            "SELECT labels, COUNT(*) FROM annotations WHERE project_id = :p GROUP BY labels"
        )
        # the newest annotation and training run, in one round trip
        self.last_ids = text(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM annotations WHERE project_id = :p), "
            "(SELECT COALESCE(MAX(id), 0) FROM training_runs WHERE project_id = :p)"
        )


class StatsQueries:
    """The owner's statistics: one aggregate each, so only a row per worker or per time
    bucket leaves the database (window functions: SQLite >= 3.25, any PostgreSQL)."""

    def __init__(self, d: Dialect) -> None:
        # the first and the last label's times (ids follow time closely enough to pick a
        # bucket width; two index lookups instead of a scan)
        self.span = text(
            "SELECT (SELECT created_at FROM annotations WHERE project_id = :p ORDER BY id "
            "LIMIT 1), (SELECT created_at FROM annotations WHERE project_id = :p "
            "ORDER BY id DESC LIMIT 1)"
        )
        self.buckets = text(
            f"SELECT {d.bucket} AS b, COUNT(*) FROM annotations WHERE project_id = :p "
            "GROUP BY 1 ORDER BY 1"
        )
        # the gap before each label of a worker; gaps over :brk seconds are breaks. One
        # worker's labels are made one after another, so their ids are in time order: the
        # window runs in the order of ix_annotations_worker, with no sort of the project
        self.activity = text(
            "SELECT worker_id, COUNT(*), MIN(created_at), MAX(created_at), "
            "COALESCE(SUM(CASE WHEN gap <= :brk THEN gap END), 0), "
            "COUNT(CASE WHEN gap <= :brk THEN 1 END) FROM (SELECT worker_id, created_at, "
            "created_at - LAG(created_at) OVER (PARTITION BY worker_id ORDER BY id) AS gap "
            "FROM annotations WHERE project_id = :p) t GROUP BY worker_id ORDER BY worker_id"
        )
        # ordinary labels of completed items with >= 2 of them, each compared with its
        # item's majority answer (labels are stored canonical: a multi-label set sorted)
        self.agreement = text(
            "WITH v AS (SELECT a.item_id, a.worker_id, a.labels FROM annotations a "
            f"JOIN items it ON it.id = a.item_id WHERE a.project_id = :p AND a.kind = {LABEL} "
            f"AND a.worker_id <> :imp AND it.status = {DONE}), "
            "answers AS (SELECT item_id, labels, COUNT(*) AS n FROM v GROUP BY item_id, labels), "
            "tops AS (SELECT item_id, MAX(n) AS top FROM answers GROUP BY item_id "
            "HAVING SUM(n) >= 2), "
            "majority AS (SELECT a.item_id, MIN(a.labels) AS labels FROM answers a "
            "JOIN tops t ON t.item_id = a.item_id AND a.n = t.top GROUP BY a.item_id "
            "HAVING COUNT(*) = 1) "
            "SELECT v.worker_id, COUNT(*), "
            "SUM(CASE WHEN m.labels = v.labels THEN 1 ELSE 0 END) FROM v "
            "JOIN tops t ON t.item_id = v.item_id "
            "LEFT JOIN majority m ON m.item_id = v.item_id GROUP BY v.worker_id"
        )


class AdminQueries:
    """API tokens and training history."""

    def __init__(self, d: Dialect) -> None:
        self.token_named = text("SELECT id FROM tokens WHERE name = :n")
        self.insert_token = text(
            "INSERT INTO tokens (name, token_hash, role, projects, any_worker, "
            f"created_at) VALUES (:n, :h, :r, :p, :a, {d.now}) RETURNING id"
        )
        self.tokens = text(
            "SELECT id, name, role, projects, any_worker, created_at, revoked_at "
            "FROM tokens ORDER BY id"
        )
        self.revoke = text(
            f"UPDATE tokens SET revoked_at = {d.now} WHERE name = :n AND revoked_at IS NULL"
        )
        self.token = text(
            "SELECT name, role, projects, any_worker FROM tokens "
            "WHERE token_hash = :h AND revoked_at IS NULL"
        )
        self.insert_run = text(
            f"INSERT INTO training_runs (project_id, {RUN_COLS}, recorded_at) "
            "VALUES (:p, :status, :message, :score, :score_std, :n_labels, "
            f":n_scored, :model_version, :seconds, :started_at, :trainer, :phases, {d.now}) "
            "RETURNING id"
        )
        self.runs = text(f"SELECT {RUN_COLS} FROM training_runs WHERE project_id = :p ORDER BY id")
        self.newest_runs = text(
            f"SELECT {RUN_COLS} FROM training_runs WHERE project_id = :p ORDER BY id DESC LIMIT :n"
        )
