"""The trainer at scale (issue 17): a feature cache that makes a run cost what changed,
scoring over processes or a Dask cluster with the same priorities, a candidate pool under a
score budget, and the phases of every run recorded with it. Real queue services on both
backends."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labelgrid import QueueClient
from labelgrid.trainer_client import TrainerClient
from labelgrid_proto.v1 import queue_pb2
from tests.support.servers import ServiceProcess, TrainerProcess
from tests.support.snapshot import query
from trainer_service import scoring
from trainer_service.cache import FeatureCache, Uncacheable
from trainer_service.loop import ActiveLearner, candidates


def _data(n: int, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.normal(size=(3, d)) * 2
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def _project(client: QueueClient, name: str, n: int = 300, labelled: int = 30) -> np.ndarray:
    X, y = _data(n)
    client.create_project(name, ["0", "1", "2"])
    labels = [str(v) if i < labelled else None for i, v in enumerate(y)]
    return np.asarray(client.add_features(name, X, labels=labels, progress=False))


def _learner(client: QueueClient, name: str, cache_dir: Path | None, **kw) -> ActiveLearner:
    return ActiveLearner(
        client,
        name,
        LogisticRegression(max_iter=500),
        eval_method=lambda m, X, y: [0.0],
        shuffle_prop=0.0,
        chunk_size=kw.pop("chunk_size", 64),
        cache_dir=cache_dir,
        **kw,
    )


def _priorities(database_url: str, ids: np.ndarray) -> dict[int, float]:
    rows = query(database_url, "SELECT id, priority FROM items")
    wanted = set(ids.tolist())
    return {int(i): float(p) for i, p in rows if int(i) in wanted}


def test_runs_pull_only_new_items_and_a_restart_reuses_the_cache(
    client: QueueClient, database_url: str, project_name: str, tmp_path: Path
) -> None:
    ids = _project(client, project_name)
    learner = _learner(client, project_name, tmp_path)
    first = learner.run_once()
    assert first.status == "ok" and first.n_scored == 270
    cache = learner.cache()
    assert len(cache) == 270 and cache.cursor == int(ids.max())
    assert [name for name, _ in first.phases] == ["pull", "fit", "score", "push"]

    X, _ = _data(40, seed=1)
    new = np.asarray(client.add_features(project_name, X, progress=False))
    second = learner.run_once()
    assert second.n_scored == 310
    assert len(cache) == 310  # only the 40 new items travelled
    assert cache.cursor == int(new.max())
    stored = np.asarray(cache.rows())[cache.positions(new)]
    assert np.array_equal(stored, X)

    # a second trainer on the same directory, while this one holds it, reads uncached
    blocked = _learner(client, project_name, tmp_path)
    assert blocked.run_once().n_scored == 310
    assert blocked._cache is None and len(cache) == 310  # (and tries again next run)

    # a restarted trainer (a new learner on the same directory) finds the cache as it was
    size = cache.disk_bytes()
    learner.close()
    again = _learner(client, project_name, tmp_path)
    result = again.run_once()
    assert result.status == "ok" and result.n_scored == 310
    assert len(again.cache()) == 310 and again.cache().disk_bytes() == size

    # and ranks exactly as the uncached path (every feature streamed) does
    cached = _priorities(database_url, new)
    uncached = _learner(client, project_name, tmp_path / "other")
    uncached._uncacheable = True
    assert uncached.run_once().n_scored == 310
    assert _priorities(database_url, new) == cached


def test_an_item_reopened_behind_the_cursor_is_fetched(
    client: QueueClient, project_name: str, tmp_path: Path
) -> None:
    _project(client, project_name, n=100, labelled=0)
    for worker in ("a", "b", "c"):
        items = client.pop(project_name, worker, n=4)
        for item, label in zip(items, ["0", "1", "2", "0"], strict=True):
            client.submit(project_name, item, label, worker)
    learner = _learner(client, project_name, tmp_path)
    assert learner.run_once().n_scored == 88
    reopened, _ = client.undo(project_name, "a")  # done when the cache passed it: not cached
    result = learner.run_once()
    assert result.n_scored == 89
    assert learner.cache().positions(np.asarray([reopened.id]))[0] >= 0


def test_phases_are_recorded_and_listed(
    client: QueueClient, project_name: str, tmp_path: Path
) -> None:
    _project(client, project_name, n=120)
    learner = _learner(client, project_name, tmp_path)
    learner.record = True
    result = learner.run_once()
    runs = client.list_training_runs(project_name)
    assert [(p.name, p.seconds) for p in runs[-1].phases] == result.phases
    assert all(s >= 0 for _, s in result.phases)
    assert sum(s for _, s in result.phases) <= result.seconds


def test_a_run_with_bad_phases_is_refused(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["a", "b"])
    bad = [
        [queue_pb2.RunPhase(name="", seconds=1.0)],
        [queue_pb2.RunPhase(name="fit", seconds=-1.0)],
        [queue_pb2.RunPhase(name="fit", seconds=float("nan"))],
        [queue_pb2.RunPhase(name=f"p{i}", seconds=0.0) for i in range(17)],
    ]
    for phases in bad:
        run = queue_pb2.TrainingRun(status="ok", phases=phases)
        with pytest.raises(grpc.RpcError) as err:
            client.record_training_run(project_name, run)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "phase" in err.value.details()
    assert client.list_training_runs(project_name) == []


def test_packed_ids_only_lists_the_pool(client: QueueClient, project_name: str) -> None:
    ids = _project(client, project_name, n=50, labelled=10)
    client.update_priorities(project_name, ids[10:], np.arange(40, dtype=float), model_version=1)
    replies = list(
        client.stream_unlabelled(project_name, chunk_size=16, ids_only=True, packed=True)
    )
    assert all(not r.items and not r.HasField("rows") for r in replies)
    assert [i for r in replies for i in r.ids] == ids[10:].tolist()
    assert [p for r in replies for p in r.priorities] == list(np.arange(40, dtype=float))


def test_packed_stream_of_mixed_inputs_still_arrives_whole(
    client: QueueClient, project_name: str
) -> None:
    """The database packs chunks of one dtype and shape; anything else goes row by row."""
    client.create_project(project_name, ["a", "b"])
    a = client.add_features(project_name, np.ones((5, 3), np.float32), progress=False)
    b = client.add_features(project_name, ["some text"], progress=False)
    c = client.add_features(project_name, np.zeros((4, 2), np.int16), progress=False)
    got: dict[int, object] = {}
    for ids, inputs in client.unlabelled(project_name, chunk_size=3):
        got.update(zip(ids, inputs, strict=True))
    assert sorted(got) == sorted([*a, *b, *c])
    assert got[b[0]] == "some text"
    assert np.array_equal(got[a[4]], np.ones(3, np.float32))
    assert got[c[0]].dtype == np.int16 and got[c[0]].shape == (2,)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_processes_and_dask_give_the_in_process_priorities(
    client: QueueClient, database_url: str, project_name: str, tmp_path: Path
) -> None:
    ids = _project(client, project_name, n=600, labelled=60)
    results = {}
    for name in ("in-process", "processes", "dask"):
        if name == "dask":
            distributed = pytest.importorskip("distributed")
            cluster = distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            )
            dask_client = distributed.Client(cluster)
            scorer: scoring.Scorer = scoring.DaskScorer(dask_client)
        elif name == "processes":
            scorer = scoring.Processes(2)
        else:
            scorer = scoring.InProcess()
        learner = _learner(client, project_name, tmp_path, scorer=scorer, chunk_size=100)
        try:
            assert learner.run_once().n_scored == 540
        finally:
            scorer.close()
            if name == "dask":
                dask_client.close()
                cluster.close()
        results[name] = _priorities(database_url, ids[60:])
    assert results["processes"] == results["in-process"]
    assert results["dask"] == results["in-process"]


def test_a_score_budget_scores_a_candidate_pool(
    client: QueueClient, database_url: str, project_name: str, tmp_path: Path
) -> None:
    ids = _project(client, project_name, n=330, labelled=30)
    learner = _learner(client, project_name, tmp_path, score_budget=100)
    first = learner.run_once()
    assert first.n_scored == 100
    before = _priorities(database_url, ids[30:])
    top_before = sorted(before, key=lambda i: -before[i])[:50]
    second = learner.run_once()
    assert second.n_scored == 100
    after = _priorities(database_url, ids[30:])
    changed = {i for i in after if after[i] != before[i]}
    assert len(changed) <= 100 and set(top_before) <= changed  # last run's top half re-scored
    lowest_scored = min(after[i] for i in changed)
    assert all(after[i] < lowest_scored for i in after if i not in changed)


def test_candidates_take_the_top_half_and_a_sample() -> None:
    prios = np.array([5.0, -np.inf, 3.0, 9.0, -np.inf, 1.0, 7.0, 2.0])
    chosen = candidates(prios, 4, np.random.default_rng(0))
    assert len(chosen) == 4 and len(set(chosen.tolist())) == 4
    assert {3, 6} <= set(chosen.tolist())  # the two highest
    assert candidates(prios, 100, np.random.default_rng(0)).tolist() == list(range(8))


def test_the_cache_drops_rows_a_dead_run_did_not_commit(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.append(np.array([1, 2]), "<f4", (3,), np.ones((2, 3), np.float32).tobytes())
    cache.commit(2)
    cache.append(np.array([3]), "<f4", (3,), np.zeros((1, 3), np.float32).tobytes())  # no commit
    with pytest.raises(Uncacheable, match="another trainer"):
        FeatureCache(tmp_path)
    cache.close()  # the process that appended died
    reopened = FeatureCache(tmp_path)
    assert len(reopened) == 2 and reopened.cursor == 2
    assert reopened.ids().tolist() == [1, 2]
    assert (tmp_path / "rows.bin").stat().st_size == 2 * 12
    with pytest.raises(Exception, match="shape"):
        reopened.append(np.array([4]), "<f4", (4,), bytes(16))


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_restarted_trainer_service_reuses_its_feature_cache(
    service: ServiceProcess, project_name: str, tmp_path: Path
) -> None:
    with QueueClient(service.address) as client:
        _project(client, project_name, n=300, labelled=30)
    cache = tmp_path / "cache"
    env = {"LABELGRID_TRAINER_CACHE_DIR": str(cache), "LABELGRID_TRAINER_WORKERS": "2"}
    seen: list[tuple[int, float, dict]] = []
    for _ in range(2):  # the same trainer, started twice
        trainer = TrainerProcess(service.address, env=env).start()
        try:
            with TrainerClient(trainer.address) as tc:
                tc.start_job(
                    project_name,
                    "sklearn.linear_model:LogisticRegression",
                    {"max_iter": 500},
                    shuffle_prop=0.0,
                )
                deadline = time.monotonic() + 120
                while tc.status(project_name).runs < 1 and time.monotonic() < deadline:
                    time.sleep(0.1)
                run = tc.status(project_name).last_run
        finally:
            trainer.kill()
        assert run.status == "ok" and run.n_scored == 270
        assert [p.name for p in run.phases] == ["pull", "fit", "score", "push"]
        (folder,) = cache.iterdir()
        assert folder.name.startswith(project_name)
        rows = folder / "rows.bin"
        seen.append(
            (
                rows.stat().st_size,
                rows.stat().st_mtime,
                json.loads((folder / "meta.json").read_text()),
            )
        )
    assert seen[0][0] == 270 * 8 * 4 and seen[0][2]["count"] == 270
    assert seen[1] == seen[0]  # the restarted trainer appended nothing: it read its cache


SCORER_CHILD = """
import sys, time
import numpy as np
from sklearn.linear_model import LogisticRegression
from trainer_service import acquisition, scoring
X = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
model = LogisticRegression().fit(X, np.arange(400) % 2)
rows = np.memmap(sys.argv[1], dtype=np.float32, mode="w+", shape=X.shape)
rows[:] = X
rows.flush()
scorer = scoring.Processes(2)
task = scoring.Task(model, acquisition.margin, False, None)
scorer.score(task, rows, np.arange(400), 100, path=sys.argv[1])
print(" ".join(str(p) for p in scorer._pool._processes), flush=True)
time.sleep(600)
"""


def test_scoring_workers_exit_when_their_trainer_is_killed(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", SCORER_CHILD, str(tmp_path / "rows.bin")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    workers = [int(p) for p in child.stdout.readline().split()]
    assert len(workers) == 2
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 60
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in workers if os.path.exists(f"/proc/{p}") and _not_zombie(p)]
    assert alive == []


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_a_cache_whose_rows_are_shorter_than_its_meta_starts_again(tmp_path: Path) -> None:
    # meta.json counts 4 rows but rows.bin holds 1 (data lost to a power cut, a full disk):
    # no row of zeros is served as an item's features, the cache starts again
    cache = FeatureCache(tmp_path)
    cache.append(np.arange(1, 5), "<f4", (2,), np.arange(1, 9, dtype=np.float32).tobytes())
    cache.commit(4)
    cache.close()
    with open(tmp_path / "rows.bin", "r+b") as f:
        f.truncate(8)
    reopened = FeatureCache(tmp_path)
    assert len(reopened) == 0 and reopened.cursor == 0
    assert reopened.positions(np.arange(1, 5)).tolist() == [-1, -1, -1, -1]
    assert (tmp_path / "rows.bin").stat().st_size == 0
    assert (tmp_path / "ids.i8").stat().st_size == 0
    reopened.append(np.array([7]), "<f4", (2,), np.array([5, 6], np.float32).tobytes())
    reopened.commit(7)
    reopened.close()
    again = FeatureCache(tmp_path)
    assert again.ids().tolist() == [7] and again.rows().tolist() == [[5.0, 6.0]]
    again.close()


def test_a_cache_whose_rows_file_is_gone_starts_again(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.append(np.array([1, 2]), "<f4", (2,), np.ones((2, 2), np.float32).tobytes())
    cache.commit(2)
    cache.close()
    (tmp_path / "rows.bin").unlink()
    for _ in range(2):  # and not only once
        reopened = FeatureCache(tmp_path)
        assert len(reopened) == 0 and reopened.cursor == 0
        assert reopened.rows().shape[0] == 0
        reopened.close()
    assert json.loads((tmp_path / "meta.json").read_text())["count"] == 0


class _Unwritable:
    """Rows of the right length that cannot be written (a write that fails half-way)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def test_an_append_whose_rows_failed_leaves_no_ids_behind(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.append(np.array([1, 2]), "<f4", (2,), np.array([[1, 2], [3, 4]], np.float32).tobytes())
    with pytest.raises(TypeError):
        cache.append(np.array([3, 4]), "<f4", (2,), _Unwritable(16))  # ids written, rows not
    assert len(cache) == 2
    cache.append(np.array([5, 6]), "<f4", (2,), np.array([[5, 6], [7, 8]], np.float32).tobytes())
    cache.commit(6)
    assert cache.ids().tolist() == [1, 2, 5, 6]
    rows = cache.rows()
    assert rows[cache.positions(np.array([5, 6]))].tolist() == [[5, 6], [7, 8]]
    assert (tmp_path / "ids.i8").stat().st_size == 4 * 8
    assert (tmp_path / "rows.bin").stat().st_size == 4 * 8
    cache.close()


class _KillsItsWorker:
    """A model that kills any process but the trainer's (a segfault, an OOM kill)."""

    def __init__(self, model: LogisticRegression, trainer: int) -> None:
        self.model, self.trainer = model, trainer

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        import os

        if os.getpid() != self.trainer:
            os._exit(1)
        return self.model.predict_proba(X)


def test_a_dead_scoring_worker_does_not_break_later_runs(tmp_path: Path) -> None:
    import os

    from trainer_service import acquisition

    X = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    model = LogisticRegression().fit(X, np.arange(400) % 2)
    path = tmp_path / "rows.bin"
    rows = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    rows[:] = X
    rows.flush()
    expected = scoring.InProcess().score(
        scoring.Task(model, acquisition.margin, False, None), rows, np.arange(400), 100
    )
    scorer = scoring.Processes(2)
    try:
        killer = scoring.Task(_KillsItsWorker(model, os.getpid()), acquisition.margin, False, None)
        got = scorer.score(killer, rows, np.arange(400), 100, path=path)
        assert np.array_equal(got, expected)  # this run scored in process
        task = scoring.Task(model, acquisition.margin, False, None)
        for _ in range(2):  # later runs get a working pool again
            got = scorer.score(task, rows, np.arange(400), 100, path=path)
            assert np.array_equal(got, expected)
        assert scorer._pool is not None
    finally:
        scorer.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_closing_a_learner_during_a_run_leaves_the_cache_to_the_next(
    client: QueueClient, project_name: str, tmp_path: Path
) -> None:
    import threading

    _project(client, project_name)
    started, go = threading.Event(), threading.Event()

    def eval_method(model, X, y):  # the run is under way, with the cache open
        started.set()
        go.wait()
        return [0.0]

    learner = ActiveLearner(
        client,
        project_name,
        LogisticRegression(max_iter=500),
        eval_method=eval_method,
        shuffle_prop=0.0,
        chunk_size=64,
        cache_dir=tmp_path,
    )
    results = []
    run = threading.Thread(target=lambda: results.append(learner.run_once()))
    run.start()
    assert started.wait(60)
    closing = threading.Thread(target=learner.close)  # StopTraining during a RetrainNow
    closing.start()
    closing.join(2)  # the fix makes close wait for the run; without it, close is done here
    go.set()
    run.join()
    closing.join()
    assert results[0].status == "ok" and results[0].n_scored == 270
    # the directory is free: the next learner of the project caches its features
    nxt = _learner(client, project_name, tmp_path)
    try:
        assert nxt.run_once().n_scored == 270
        assert not nxt._uncacheable and nxt._cache is not None and len(nxt._cache) == 270
    finally:
        nxt.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_learner_that_found_the_cache_busy_tries_it_again(
    client: QueueClient, project_name: str, tmp_path: Path
) -> None:
    _project(client, project_name)
    first = _learner(client, project_name, tmp_path)
    second = _learner(client, project_name, tmp_path)
    try:
        assert first.run_once().n_scored == 270
        assert second.run_once().n_scored == 270  # uncached: the first holds the directory
        assert second._cache is None
        first.close()
        assert second.run_once().n_scored == 270
        assert second._cache is not None and len(second._cache) == 270
    finally:
        first.close()
        second.close()
