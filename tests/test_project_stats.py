"""GetProjectStats on both backends, overlap 1 and 3: per-worker counts, active time, pace
and agreement with the majority answer, and labels per time bucket, equal to what the
labels given (and the times the database recorded for them) imply."""

from __future__ import annotations

import grpc
import pytest

from labelgrid import QueueClient
from tests.support.crowd import (
    PLAN_1,
    PLAN_3,
    expected_buckets,
    expected_workers,
    label_by_plan,
)
from tests.support.servers import ServiceProcess
from tests.test_security import make_token


@pytest.mark.parametrize(("overlap", "plan"), [(1, PLAN_1), (3, PLAN_3)])
def test_stats_equal_the_labels_given(
    client: QueueClient, database_url: str, overlap: int, plan: list[dict[str, str]]
) -> None:
    client.create_project("crowd", ["a", "b", "c"], overlap=overlap)
    assert list(client.project_stats("crowd").workers) == []
    label_by_plan(client, "crowd", plan, pause=0.05)
    stats = client.project_stats("crowd")
    want = expected_workers(database_url, "crowd", plan)
    got = {w.worker_id: w for w in stats.workers}
    assert sorted(got) == sorted(want)
    for name, w in got.items():
        e = want[name]
        assert (w.labels, w.compared, w.agreed) == (e.labels, e.compared, e.agreed), name
        assert w.active_seconds == pytest.approx(e.active_seconds, abs=1e-6)
        assert w.active_seconds > 0  # the pauses between labels
        assert w.labels_per_minute == pytest.approx(e.labels_per_minute, rel=1e-9)
        if e.compared:
            assert w.agreement_with_consensus == pytest.approx(e.agreed / e.compared)
        else:
            assert not w.HasField("agreement_with_consensus")
        assert w.first_label_at.ToNanoseconds() <= w.last_label_at.ToNanoseconds()
    if overlap == 3:  # ann: a a b a b against a a b - b; item 3 is a tie
        assert (got["ann"].compared, got["ann"].agreed) == (5, 4)
        assert (got["cat"].compared, got["cat"].agreed) == (5, 2)
        # the same as GetAgreement's per-worker figures for those the tie does not touch
        # (GetAgreement gives a tied item to its lowest label, "a": ann's label there)
        theirs = {w.worker_id: w for w in client.agreement("crowd").workers}
        for name in ("bob", "cat"):
            assert (theirs[name].compared, theirs[name].agreement_with_consensus) == (
                got[name].compared,
                got[name].agreement_with_consensus,
            )
    # labels over time: with an automatic width and with a 1-second width
    for width in (0, 1):
        stats = client.project_stats("crowd", bucket_seconds=width)
        assert stats.bucket_seconds == (width or 1)  # a few seconds of labelling: 1 s
        buckets = {b.start.seconds: b.labels for b in stats.buckets}
        assert buckets == expected_buckets(database_url, "crowd", stats.bucket_seconds)
        assert sum(buckets.values()) == sum(len(entry) for entry in plan)
    wide = client.project_stats("crowd", bucket_seconds=86400)
    assert [b.labels for b in wide.buckets] in ([sum(map(len, plan))], [1, sum(map(len, plan)) - 1])


def test_stats_refuse_bad_requests(client: QueueClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.project_stats("nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    client.create_project("p", ["a"])
    with pytest.raises(grpc.RpcError) as err:
        client.project_stats("p", bucket_seconds=-5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bucket_seconds" in err.value.details()


def test_stats_are_for_admins_only(database_url: str) -> None:
    service = ServiceProcess(
        database_url, {"LABELGRID_AUTH": "true", "LABELGRID_AUTH_CACHE_SECONDS": "0"}
    ).start()
    try:
        admin = make_token(database_url, "root", "admin")
        with QueueClient(service.address, token=admin, retries=0) as root:
            root.create_project("p", ["a"])
            assert root.project_stats("p").bucket_seconds == 1
        for role in ("trainer", "labeller"):
            value = make_token(database_url, role, role)
            with QueueClient(service.address, token=value, retries=0) as other:
                with pytest.raises(grpc.RpcError) as err:
                    other.project_stats("p")
                assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert f"role {role!r} may not call GetProjectStats" in err.value.details()
    finally:
        service.kill()
