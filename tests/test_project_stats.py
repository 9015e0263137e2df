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
        # where there is a clear majority, the same as GetAgreement's per-worker figures
        # (which count an item with a tie against the lowest label instead)
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
