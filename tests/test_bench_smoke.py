"""The benchmark harnesses run end to end at tiny sizes, so they cannot rot.

No timing is asserted (these machines are shared); only that each harness completes and
writes complete results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *args: str) -> dict:
    env = {**os.environ, "LABELGRID_BENCH_RESULTS": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}


def test_throughput_harness_quick(tmp_path: Path, pg) -> None:
    results = _run(tmp_path, "bench.throughput", "--quick")["throughput-quick"]
    for backend in ("sqlite", "postgres"):
        r = results["backends"][backend]
        assert r["add_64d_rows_per_s"] > 0 and r["update_priorities_seconds"] > 0
        assert {x["labellers"] for x in r["pop_submit"]} == {1, 8}
        assert all(x["double_leases"] == 0 for x in r["pop_submit"])
        assert [x["labellers"] for x in r["pop_submit"] if x["overlap"] == 3] == [8]
    assert results["ratios"]["postgres"]["double_leases_total"] == 0
    assert set(results["bare_grpc_echo_calls_per_s"]) == {"1", "8"}


def test_trainer_memory_harness_small(tmp_path: Path) -> None:
    results = _run(tmp_path, "bench.trainer_memory", "--items", "3000")["trainer_memory"]
    assert set(results["runs"]) == {"margin", "batch-margin"}
    assert all(r["scored"] == 2000 for r in results["runs"].values())


def test_export_memory_harness_small(tmp_path: Path) -> None:
    results = _run(
        tmp_path, "bench.export_memory", "--sizes", "300", "600", "--formats", "csv", "parquet"
    )["export_memory"]
    assert [(r["labels"], r["votes"], r["overlap"], r["format"]) for r in results["runs"]] == [
        (n, votes, k, f)
        for n in (300, 600)
        for votes, k in (("imported", 1), ("imported", 3), ("crowd", 3))
        for f in ("csv", "parquet")
    ]
    assert all(r["peak_rss_mb"] > 0 for r in results["runs"])
    assert all(
        r["server_peak_rss_mb"] > 0 and r["server_rss_before_mb"] > 0 for r in results["runs"]
    )


def test_soak_harness_short(tmp_path: Path, pg) -> None:
    """Half a minute, five labellers, the kill -9 and the PostgreSQL restart all the same:
    nothing acknowledged is lost and nothing is labelled twice."""
    results = _run(tmp_path, "bench.soak", "--labellers", "5", "--minutes", "0.5", "--grace", "2")[
        "soak"
    ]
    assert results["acknowledged_labels"] > 20
    assert results["lost_acknowledged_labels"] == 0
    assert results["items_labelled_twice"] == 0
    assert results["labeller_errors"] == []
    assert set(results["events"]) >= {"queue_killed_s", "postgres_stopped_s"}
    assert not any(" INTERNAL" in status for status in results["statuses"])


def test_watchers_harness_quick(tmp_path: Path, pg) -> None:
    """Both backends, both transports, two replicas: every run labelled, and with watchers
    open the progress reached them (on the second replica too, by LISTEN/NOTIFY or the poll)."""
    runs = _run(tmp_path, "bench.watchers", "--quick")["watchers-quick"]["runs"]
    kinds = {(r["backend"], r["transport"], r["replicas"], r["watchers"]) for r in runs}
    assert kinds == {
        *(
            (b, t, 1, w)
            for b in ("sqlite", "postgres")
            for t in ("grpc", "connect")
            for w in (0, 5)
        ),
        ("postgres", "grpc", 2, 0),
        ("postgres", "grpc", 2, 5),
    }
    for r in runs:
        assert r["pairs"] > 0 and r["server_cpu_ms_per_change"] > 0
        total = [a + b for a, b in zip(r["deliveries"], r["deliveries_after_window"], strict=True)]
        assert all(n > 0 for n in total) == (r["watchers"] > 0), r


def test_crowd_harness_quick(tmp_path: Path, pg) -> None:
    """A few browser-protocol labellers for seconds on both backends: labels acknowledged,
    every one of them read back from the database, no errors, no item labelled twice."""
    results = _run(tmp_path, "bench.crowd", "--quick")["crowd-quick"]
    for backend in ("sqlite", "postgres"):
        steps = results["backends"][backend]["steps"]
        assert [s["labellers"] for s in steps] == [5, 15]
        for s in steps:
            assert s["labels"] > 0 and s["acknowledged_total"] >= s["labels"]
            assert s["acknowledged_lost"] == 0
            assert s["items_labelled_twice"] == 0
            assert s["errors"] == {} and s["errors_outside_window"] == {}
            assert s["server_cpu_ms_per_label"] > 0
            assert s["rtt"]["Submit"]["n"] > 0 and s["progress_messages_per_s"] > 0
        assert s["database_cpu_ms_per_label"] is not None or backend == "sqlite"


def test_label_efficiency_harness_quick(tmp_path: Path) -> None:
    """The noisy-crowd benchmark at 100 annotations, one seed: every strategy with 1 and 10
    labellers has model and label accuracies at each checkpoint, and the plot is written."""
    from bench.label_efficiency import CHECKPOINTS, DEFAULT_STRATEGIES

    results = _run(tmp_path, "bench.label_efficiency", "--quick")["label_efficiency_crowd-quick"]
    assert results["complete"] is True
    assert "simulated" in results["setup"]["relabel_queue_path"]
    assert len(results["runs"]) == 2 * len(DEFAULT_STRATEGIES)
    summary = results["summary_mean_std"]
    assert set(summary) == {f"{s} x{n}" for s in DEFAULT_STRATEGIES for n in (1, 10)}
    for curves in summary.values():
        for what in ("model_accuracy", "label_accuracy"):
            assert list(curves[what]) == [str(n) for n in CHECKPOINTS if n <= 100]
            mean, std = curves[what]["100"]
            assert 0.0 <= mean <= 1.0 and std == 0.0
    for run in results["runs"]:
        annotations = [point[0] for point in run["curve"]]
        assert annotations == sorted(annotations) and annotations[-1] == 100
    assert set(results["targets"]) >= {"relabel-activelab x1", "ten_labellers_vs_one"}
    assert (tmp_path / "label_efficiency_crowd-quick.png").stat().st_size > 10_000
