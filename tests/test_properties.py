"""Property-based bad input (hypothesis): the codec and every RPC's validation.

Whatever arrives, the answer is a clean status (never UNKNOWN or INTERNAL) and a refused
request leaves the database exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labelgrid import QueueClient, arrays
from labelgrid_proto.v1 import arrays_pb2, queue_pb2
from tests.support.servers import ServiceProcess
from tests.support.snapshot import snapshot

CLEAN = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
names = st.sampled_from(["known", "", "nope"]) | text
dtypes = (
    st.sampled_from(
        [
            "<f4",
            "<f8",
            "|u1",
            "<i8",
            "|b1",
            "<c8",
            "<f2",
            ">f4",
            "<U3",
            "O",
            "",
            "float32",
            "|V4",
            "<M8[s]",
            "f4",
            "xyz",
            "<i4",
        ]
    )
    | text
)
shapes = st.lists(st.integers(-3, 6) | st.sampled_from([2**31, 2**62, -(2**40)]), max_size=5)
int64 = st.integers(-(2**63), 2**63 - 1)
floats = st.floats(allow_nan=True, allow_infinity=True)
labels = st.lists(st.sampled_from(["a", "b"]) | text | st.just("x" * 1500), max_size=3)


def _array(dtype: str, shape: list[int], data: bytes) -> arrays_pb2.NDArray:
    return arrays_pb2.NDArray(dtype=dtype, shape=shape, data=data)


# -- the codec, in-process -------------------------------------------------------------------


@SETTINGS
@given(dtypes, shapes, st.binary(max_size=64))
def test_decode_accepts_exactly_or_refuses(dtype: str, shape: list[int], data: bytes) -> None:
    try:
        out = arrays.decode(_array(dtype, shape, data))
    except arrays.ArrayCodecError:
        return
    assert out.tobytes() == data and list(out.shape) == shape


@SETTINGS
@given(
    hnp.arrays(
        st.sampled_from(
            [
                np.bool_,
                np.int8,
                np.uint16,
                np.int64,
                np.float16,
                np.float32,
                np.float64,
                np.complex64,
            ]
        ),
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_encode_decode_is_bit_exact(a: np.ndarray) -> None:
    back = arrays.decode(arrays.encode(a))
    assert back.dtype == a.dtype and back.shape == a.shape and back.tobytes() == a.tobytes()


# -- every RPC, over gRPC, on both backends --------------------------------------------------


@pytest.fixture
def target(service: ServiceProcess, database_url: str) -> Iterator[tuple[QueueClient, str]]:
    with QueueClient(service.address, retries=0) as client:
        client.create_project("known", ["a", "b"])
        client.add_features("known", np.zeros((5, 2), np.float32))
        client.submit("known", client.pop("known", "w")[0], "a", "w")
        client.pop("known", "w")
        yield client, database_url


def _clean(target: tuple[QueueClient, str], call) -> None:
    client, url = target
    before = snapshot(url)
    try:
        call(client.stub)
    except grpc.RpcError as exc:
        assert exc.code() in CLEAN, (exc.code(), exc.details())
        assert exc.details()
        assert snapshot(url) == before


@SETTINGS
@given(names, text, st.integers(-(2**31), 2**31 - 1))
def test_pop(target, project: str, worker: str, n: int) -> None:
    _clean(target, lambda s: s.Pop(queue_pb2.PopRequest(project=project, worker_id=worker, n=n)))


@SETTINGS
@given(names, int64, text, text, labels, st.booleans())
def test_submit_release_undo(target, project, item_id, token, worker, labs, nxt) -> None:
    _clean(
        target,
        lambda s: s.Submit(
            queue_pb2.SubmitRequest(
                project=project,
                item_id=item_id,
                lease_token=token,
                worker_id=worker,
                labels=labs,
                pop_next=nxt,
            )
        ),
    )
    _clean(
        target,
        lambda s: s.Release(
            queue_pb2.ReleaseRequest(
                project=project, item_id=item_id, lease_token=token, worker_id=worker
            )
        ),
    )
    _clean(target, lambda s: s.Undo(queue_pb2.UndoRequest(project=project, worker_id=worker)))


@SETTINGS
@given(
    names,
    text,
    dtypes,
    shapes,
    st.binary(max_size=80),
    st.lists(labels, max_size=3),
    st.lists(floats, max_size=3),
    text,
)
def test_add_features(target, project, key, dtype, shape, data, labs, prios, meta) -> None:
    chunk = queue_pb2.AddFeaturesRequest(
        project=project,
        idempotency_key=key,
        items=[
            queue_pb2.NewItem(
                input=arrays_pb2.Payload(array=_array(dtype, shape, data)), metadata_json=meta
            )
        ],
        labels=[queue_pb2.Labels(values=v) for v in labs],
        priorities=prios,
    )
    rows = queue_pb2.AddFeaturesRequest(rows=_array(dtype, shape, data))
    _clean(target, lambda s: s.AddFeatures(iter([chunk, rows])))


@SETTINGS
@given(names, int64, st.lists(int64, max_size=6), st.lists(floats, max_size=6))
def test_update_priorities(target, project, version, ids, prios) -> None:
    request = queue_pb2.UpdatePrioritiesRequest(
        project=project, model_version=version, ids=ids, priorities=prios
    )
    _clean(target, lambda s: s.UpdatePriorities(iter([request])))


@SETTINGS
@given(text, st.lists(text, max_size=4), st.integers(-(2**31), 2**31 - 1), st.booleans())
def test_create_project(target, name, options, lease, multi) -> None:
    project = queue_pb2.Project(name=name, options=options, lease_seconds=lease, multi_label=multi)
    _clean(target, lambda s: s.CreateProject(queue_pb2.CreateProjectRequest(project=project)))


@SETTINGS
@given(names, int64, st.integers(-(2**31), 2**31 - 1))
def test_streams(target, project, cursor, chunk) -> None:
    _clean(
        target,
        lambda s: list(
            s.StreamLabelled(
                queue_pb2.StreamLabelledRequest(
                    project=project, after_annotation_id=cursor, chunk_size=chunk
                )
            )
        ),
    )
    _clean(
        target,
        lambda s: list(
            s.StreamUnlabelled(
                queue_pb2.StreamUnlabelledRequest(
                    project=project, after_item_id=cursor, chunk_size=chunk
                )
            )
        ),
    )
    _clean(
        target,
        lambda s: list(
            s.ExportLabels(queue_pb2.ExportLabelsRequest(project=project, chunk_size=chunk))
        ),
    )
