"""Every malformed request gets a precise status and leaves the database as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from labelgrid import QueueClient
from labelgrid_proto.v1 import arrays_pb2, queue_pb2, queue_pb2_grpc
from tests.support.servers import ServiceProcess
from tests.support.snapshot import snapshot

Code = grpc.StatusCode


@pytest.fixture
def stub(service: ServiceProcess) -> Iterator[queue_pb2_grpc.QueueServiceStub]:
    with service.channel() as channel:
        yield queue_pb2_grpc.QueueServiceStub(channel)


@pytest.fixture
def seeded(client: QueueClient, project_name: str) -> dict:
    """A project with items, one leased to alice and one labelled by her."""
    client.create_project(project_name, ["cat", "dog"])
    client.add_features(project_name, np.zeros((4, 2), dtype=np.float32))
    done = client.pop(project_name, "alice")[0]
    client.submit(project_name, done, "cat", "alice")
    leased = client.pop(project_name, "alice")[0]
    return {"project": project_name, "leased": leased, "done": done}


def refused(database_url: str, call: Callable[[], object], code: Code, *words: str) -> str:
    before = snapshot(database_url)
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, err.value.details()
    for word in words:
        assert word in err.value.details(), err.value.details()
    assert snapshot(database_url) == before
    return err.value.details()


def array_item(dtype: str, shape: list[int], data: bytes) -> queue_pb2.NewItem:
    return queue_pb2.NewItem(
        input=arrays_pb2.Payload(array=arrays_pb2.NDArray(dtype=dtype, shape=shape, data=data))
    )


def add(stub, *chunks: queue_pb2.AddFeaturesRequest) -> Callable[[], object]:
    return lambda: stub.AddFeatures(iter(chunks), timeout=10)


def test_unknown_project(stub, seeded, database_url) -> None:
    refused(
        database_url,
        lambda: stub.Pop(queue_pb2.PopRequest(project="nope", worker_id="w")),
        Code.NOT_FOUND,
        "nope",
    )
    refused(
        database_url,
        lambda: stub.GetProject(queue_pb2.GetProjectRequest(project="nope")),
        Code.NOT_FOUND,
    )
    refused(database_url, add(stub, queue_pb2.AddFeaturesRequest(project="nope")), Code.NOT_FOUND)
    refused(
        database_url,
        lambda: stub.Pop(queue_pb2.PopRequest(worker_id="w")),
        Code.INVALID_ARGUMENT,
        "project is empty",
    )


def test_unknown_item(stub, seeded, database_url) -> None:
    p, leased = seeded["project"], seeded["leased"]
    request = queue_pb2.SubmitRequest(
        project=p, item_id=999999, lease_token=leased.lease_token, worker_id="alice", labels=["cat"]
    )
    refused(database_url, lambda: stub.Submit(request), Code.NOT_FOUND, "999999")
    release = queue_pb2.ReleaseRequest(project=p, item_id=999999, lease_token="t", worker_id="a")
    refused(database_url, lambda: stub.Release(release), Code.NOT_FOUND)


def test_item_of_another_project_is_not_found(client, stub, seeded, database_url) -> None:
    client.create_project("other-" + seeded["project"], ["cat"])
    leased = seeded["leased"]
    request = queue_pb2.SubmitRequest(
        project="other-" + seeded["project"],
        item_id=leased.id,
        lease_token=leased.lease_token,
        worker_id="alice",
        labels=["cat"],
    )
    refused(database_url, lambda: stub.Submit(request), Code.NOT_FOUND)


@pytest.mark.parametrize("dtype", ["", "float128x", "<U4", "O", "|V8", ">f4", "datetime64[s]"])
def test_dtype_not_understood_or_unsupported(stub, seeded, database_url, dtype) -> None:
    chunk = queue_pb2.AddFeaturesRequest(
        project=seeded["project"], items=[array_item(dtype, [2], b"\0" * 8)]
    )
    refused(database_url, add(stub, chunk), Code.INVALID_ARGUMENT, "dtype")


@pytest.mark.parametrize(("shape", "nbytes"), [([2, 2], 15), ([3], 0), ([-1], 4), ([], 8)])
def test_data_length_must_match_dtype_and_shape(stub, seeded, database_url, shape, nbytes) -> None:
    chunk = queue_pb2.AddFeaturesRequest(
        project=seeded["project"], items=[array_item("<f4", shape, b"\0" * nbytes)]
    )
    refused(database_url, add(stub, chunk), Code.INVALID_ARGUMENT)


def test_failed_chunk_writes_nothing(stub, seeded, database_url) -> None:
    good = np.ones((100, 2), np.float32)
    chunks = [
        queue_pb2.AddFeaturesRequest(
            project=seeded["project"],
            rows=arrays_pb2.NDArray(dtype="<f4", shape=[100, 2], data=good.tobytes()),
        ),
        queue_pb2.AddFeaturesRequest(items=[array_item("<f4", [2], b"\0" * 8)]),
        queue_pb2.AddFeaturesRequest(items=[array_item("<f4", [2], b"\0" * 7)]),
    ]
    refused(database_url, add(stub, *chunks), Code.INVALID_ARGUMENT, "item 101", "len(data)")
    mixed = queue_pb2.AddFeaturesRequest(
        project=seeded["project"],
        items=[array_item("<f4", [2], b"\0" * 8)],
        labels=[queue_pb2.Labels(values=["horse"])],
    )
    refused(database_url, add(stub, mixed), Code.INVALID_ARGUMENT, "horse")
    bad_prio = queue_pb2.AddFeaturesRequest(
        project=seeded["project"],
        items=[array_item("<f4", [2], b"\0" * 8)],
        priorities=[float("nan")],
    )
    refused(database_url, add(stub, bad_prio), Code.INVALID_ARGUMENT, "finite")
    other = queue_pb2.AddFeaturesRequest(project="x", items=[array_item("<f4", [2], b"\0" * 8)])
    refused(database_url, add(stub, chunks[0], other), Code.INVALID_ARGUMENT, "one project")
    empty = queue_pb2.AddFeaturesRequest(project=seeded["project"], items=[queue_pb2.NewItem()])
    refused(database_url, add(stub, empty), Code.INVALID_ARGUMENT, "input is empty")
    meta = queue_pb2.AddFeaturesRequest(
        project=seeded["project"],
        items=[queue_pb2.NewItem(input=arrays_pb2.Payload(text="t"), metadata_json="[1")],
    )
    refused(database_url, add(stub, meta), Code.INVALID_ARGUMENT, "metadata_json")


def test_empty_worker_id(stub, seeded, database_url) -> None:
    p, leased = seeded["project"], seeded["leased"]
    refused(
        database_url,
        lambda: stub.Pop(queue_pb2.PopRequest(project=p)),
        Code.INVALID_ARGUMENT,
        "worker_id",
    )
    request = queue_pb2.SubmitRequest(
        project=p, item_id=leased.id, lease_token=leased.lease_token, labels=["cat"]
    )
    refused(database_url, lambda: stub.Submit(request), Code.INVALID_ARGUMENT, "worker_id")
    refused(
        database_url,
        lambda: stub.Undo(queue_pb2.UndoRequest(project=p)),
        Code.INVALID_ARGUMENT,
        "worker_id",
    )


def test_label_not_among_options(stub, seeded, database_url) -> None:
    p, leased = seeded["project"], seeded["leased"]

    def submit(labels: list[str]) -> Callable[[], object]:
        return lambda: stub.Submit(
            queue_pb2.SubmitRequest(
                project=p,
                item_id=leased.id,
                lease_token=leased.lease_token,
                worker_id="alice",
                labels=labels,
            )
        )

    refused(database_url, submit(["horse"]), Code.INVALID_ARGUMENT, "horse", "options")
    refused(database_url, submit([]), Code.INVALID_ARGUMENT, "empty")
    refused(database_url, submit(["cat", "dog"]), Code.INVALID_ARGUMENT, "single-label")
    refused(database_url, submit(["x" * 2000]), Code.INVALID_ARGUMENT, "at most 1000")


@pytest.mark.parametrize("n", [-1, 1001, 2**31 - 1])
def test_n_out_of_range(stub, seeded, database_url, n) -> None:
    request = queue_pb2.PopRequest(project=seeded["project"], worker_id="w", n=n)
    refused(database_url, lambda: stub.Pop(request), Code.INVALID_ARGUMENT, "between 1 and 1000")


def test_wrong_lease_and_wrong_worker(stub, seeded, database_url) -> None:
    p, leased, done = seeded["project"], seeded["leased"], seeded["done"]
    wrong_token = queue_pb2.SubmitRequest(
        project=p, item_id=leased.id, lease_token="bogus", worker_id="alice", labels=["cat"]
    )
    refused(database_url, lambda: stub.Submit(wrong_token), Code.FAILED_PRECONDITION)
    wrong_worker = queue_pb2.SubmitRequest(
        project=p,
        item_id=leased.id,
        lease_token=leased.lease_token,
        worker_id="mallory",
        labels=["cat"],
    )
    refused(database_url, lambda: stub.Submit(wrong_worker), Code.FAILED_PRECONDITION, "mallory")
    relabel = queue_pb2.SubmitRequest(
        project=p, item_id=done.id, lease_token=done.lease_token, worker_id="alice", labels=["dog"]
    )
    refused(database_url, lambda: stub.Submit(relabel), Code.FAILED_PRECONDITION, "Undo")


def test_update_priorities_errors(stub, seeded, database_url) -> None:
    p = seeded["project"]

    def update(*chunks: queue_pb2.UpdatePrioritiesRequest) -> Callable[[], object]:
        return lambda: stub.UpdatePriorities(iter(chunks))

    ids = [seeded["leased"].id, seeded["done"].id]
    refused(
        database_url,
        update(
            queue_pb2.UpdatePrioritiesRequest(
                project=p, model_version=1, ids=[*ids, 424242], priorities=[1, 2, 3]
            )
        ),
        Code.INVALID_ARGUMENT,
        "not items",
    )
    refused(
        database_url,
        update(
            queue_pb2.UpdatePrioritiesRequest(project=p, model_version=1, ids=ids, priorities=[1])
        ),
        Code.INVALID_ARGUMENT,
    )
    refused(
        database_url,
        update(
            queue_pb2.UpdatePrioritiesRequest(
                project=p, model_version=1, ids=ids, priorities=[1, float("inf")]
            )
        ),
        Code.INVALID_ARGUMENT,
        "finite",
    )
    refused(
        database_url,
        update(
            queue_pb2.UpdatePrioritiesRequest(
                project=p, model_version=1, ids=[ids[0], ids[0]], priorities=[1, 2]
            )
        ),
        Code.INVALID_ARGUMENT,
        "repeat",
    )
    refused(
        database_url,
        update(
            queue_pb2.UpdatePrioritiesRequest(
                project=p, model_version=-3, ids=ids, priorities=[1, 2]
            )
        ),
        Code.INVALID_ARGUMENT,
    )


def test_create_project_errors(stub, seeded, database_url) -> None:
    def create(**kw: object) -> Callable[[], object]:
        return lambda: stub.CreateProject(
            queue_pb2.CreateProjectRequest(project=queue_pb2.Project(**kw))
        )

    refused(database_url, create(name=""), Code.INVALID_ARGUMENT, "name")
    refused(database_url, create(name="x", options=["a", "a"]), Code.INVALID_ARGUMENT, "repeat")
    refused(database_url, create(name="x", lease_seconds=-5), Code.INVALID_ARGUMENT, "lease")
    refused(
        database_url, create(name=seeded["project"], options=["cat", "dog"]), Code.ALREADY_EXISTS
    )


def test_message_too_large_names_the_limit(database_url, project_name) -> None:
    proc = ServiceProcess(database_url, env={"LABELGRID_MAX_MESSAGE_BYTES": "1048576"}).start()
    try:
        with QueueClient(proc.address, retries=0) as client:
            client.create_project(project_name, ["x"])
            big = np.zeros((1, 300_000), np.float32)  # 1.2 MB in one message
            chunks = [
                queue_pb2.AddFeaturesRequest(
                    project=project_name,
                    rows=arrays_pb2.NDArray(dtype="<f4", shape=[1, 300_000], data=big.tobytes()),
                )
            ]
            details = refused(
                database_url, add(client.stub, *chunks), Code.RESOURCE_EXHAUSTED, "1048576"
            )
            assert "larger than max" in details
            # the client's own chunking stays under the limit
            assert (
                len(
                    client.add_features(
                        project_name, np.zeros((4, 60_000), np.float32), chunk_bytes=500_000
                    )
                )
                == 4
            )
    finally:
        proc.kill()


def test_only_an_unreachable_database_is_unavailable() -> None:
    """UNAVAILABLE tells clients to retry, so it is kept for outages; a failed statement is
    INTERNAL (a bug to report, not to retry) and a deadlock victim is ABORTED."""
    import asyncpg
    import sqlalchemy.exc

    from queue_service.service import _status

    lost = sqlalchemy.exc.InterfaceError("SELECT 1", {}, ConnectionResetError())
    refused = sqlalchemy.exc.OperationalError("SELECT 1", {}, OSError("connection refused"))
    broken = sqlalchemy.exc.ProgrammingError("SELEC 1", {}, Exception("syntax error"))
    assert _status(lost)[0] == grpc.StatusCode.UNAVAILABLE
    assert _status(refused)[0] == grpc.StatusCode.UNAVAILABLE
    assert _status(ConnectionRefusedError())[0] == grpc.StatusCode.UNAVAILABLE
    assert _status(broken)[0] == grpc.StatusCode.INTERNAL
    assert _status(asyncpg.DeadlockDetectedError("deadlock"))[0] == grpc.StatusCode.ABORTED
    # the table in queue_service/store/failures.py, wrapped as SQLAlchemy wraps them
    # (the tests in test_database_failures.py provoke each for real)
    from queue_service.store import failures

    def wrapped(exc: BaseException) -> Exception:
        adapted = Exception(str(exc))
        adapted.__cause__ = exc
        return sqlalchemy.exc.DBAPIError("SELECT 1", {}, adapted)

    unavailable = [
        asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 1 overflow 1 reached"),
    ]
    for exc in unavailable:
        for form in (exc, wrapped(exc)):
            assert _status(form)[0] == grpc.StatusCode.UNAVAILABLE, repr(form)
    for exc in (asyncpg.DeadlockDetectedError("x"), asyncpg.SerializationError("x")):
        assert _status(wrapped(exc))[0] == grpc.StatusCode.ABORTED
        assert not failures.broken(exc)  # the connection is fine
    assert failures.broken(wrapped(unavailable[0])) and failures.never_sent(unavailable[0])
    assert not failures.broken(unavailable[6])  # a timeout leaves the connection usable
    # a bad argument is a bug: INTERNAL, and the connection is kept
    bad = asyncpg.DataError("invalid input for query argument $1")
    assert _status(bad)[0] == grpc.StatusCode.INTERNAL and not failures.broken(bad)
    assert _status(asyncpg.UniqueViolationError("dup"))[0] == grpc.StatusCode.INTERNAL
