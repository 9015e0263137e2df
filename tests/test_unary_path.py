"""The page's unary calls answered by unary.py: the same replies and errors as connectrpc's
path (which a `connect-timeout-ms` header selects) over a real server, and only requests of
the page's shape take it."""

from __future__ import annotations

import asyncio
import gzip
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from labelgrid import QueueClient
from labelgrid_proto.v1 import queue_pb2
from queue_service.web.unary import UnaryPath
from tests.support.servers import ServiceProcess, secured_web
from tests.test_security import make_token

SERVICE = "/labelgrid.v1.QueueService/"
PAGE = {"content-type": "application/proto", "connect-protocol-version": "1"}
# connectrpc's general path: a deadline is something only it handles
GENERAL = {**PAGE, "connect-timeout-ms": "60000"}


def post(base: str, method: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(base + SERVICE + method, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def both(base: str, method: str, body: bytes, extra: dict | None = None) -> list[Any]:
    """The call through each path: (status, the headers that carry meaning, body)."""
    out = []
    for headers in (PAGE, GENERAL):
        status, got, data = post(base, method, body, {**headers, **(extra or {})})
        kept = {k.lower(): v for k, v in got.items() if k.lower() in MEANING}
        if kept.get("content-encoding") == "gzip":
            data = gzip.decompress(data)
        out.append((status, kept, data))
    return out


MEANING = {"content-type", "content-encoding", "vary"}


@pytest.fixture
def web(database_url: str):
    proc = ServiceProcess(
        database_url, None, "--web-address", "127.0.0.1:0", "--max-message-bytes", "65536"
    ).start()
    with QueueClient(proc.address) as client:
        client.create_project("u", ["a", "b"])
        client.add_features("u", [f"t{i}" for i in range(10)])
    yield proc
    proc.kill()


@pytest.mark.parametrize(
    ("method", "body", "code"),
    [
        ("GetProject", queue_pb2.GetProjectRequest(project="nope"), "not_found"),
        (
            "Submit",
            queue_pb2.SubmitRequest(
                project="u", item_id=1, lease_token="stale", worker_id="w", labels=["a"]
            ),
            "failed_precondition",
        ),
        ("Pop", queue_pb2.PopRequest(project="u", worker_id="w", n=-1), "invalid_argument"),
        ("Pop", b"\xff\xff\xff", "invalid_argument"),  # not a message
        ("Pop", b"\x00" * 70_000, "resource_exhausted"),  # over --max-message-bytes
    ],
)
def test_errors_are_the_same_on_both_paths(
    web: ServiceProcess, method: str, body: Any, code: str
) -> None:
    data = body if isinstance(body, bytes) else body.SerializeToString()
    page, general = both(web.web_url, method, data)
    assert page == general
    assert json.loads(page[2])["code"] == code, page


@pytest.mark.parametrize(
    "accept", ["", "gzip, deflate, br, zstd", "br, gzip;q=0.5", "identity, gzip"]
)
def test_replies_are_the_same_on_both_paths(web: ServiceProcess, accept: str) -> None:
    extra = {"accept-encoding": accept} if accept else {}
    page, general = both(
        web.web_url,
        "Pop",
        queue_pb2.PopRequest(project="u", worker_id="w", n=1).SerializeToString(),
        extra,
    )
    assert page[:2] == general[:2] and page[0] == 200
    assert page[1]["content-encoding"] == ("gzip" if "gzip," in accept else "identity")
    first = queue_pb2.PopResponse.FromString(page[2]).items
    second = queue_pb2.PopResponse.FromString(general[2]).items
    assert len(first) == len(second) == 1 and first[0].id != second[0].id
    # a click: Submit with its next item, through the page's path; the label is stored
    item = first[0]
    status, _, data = both(
        web.web_url,
        "Submit",
        queue_pb2.SubmitRequest(
            project="u",
            item_id=item.id,
            lease_token=item.lease_token,
            worker_id="w",
            labels=["b"],
            pop_next=True,
        ).SerializeToString(),
        extra,
    )[0]
    assert status == 200 and queue_pb2.SubmitResponse.FromString(data).next.id > 0
    with QueueClient(web.address) as client:
        stored = {row.item_id: list(row.labels) for row in client.export_labels("u")}
    assert stored[item.id] == ["b"]


def test_auth_is_the_same_on_both_paths(database_url: str) -> None:
    service = secured_web(database_url)
    try:
        admin = make_token(database_url, "root", "admin")
        uma = make_token(database_url, "uma", "labeller", "t")
        with QueueClient(service.address, token=admin) as client:
            client.create_project("t", ["a"])
        leases = queue_pb2.ListLeasesRequest(project="t").SerializeToString()
        page, general = both(service.web_url, "ListLeases", leases)
        assert page == general and json.loads(page[2])["code"] == "unauthenticated"
        page, general = both(service.web_url, "ListLeases", leases, {"authorization": "Bearer x"})
        assert page == general and json.loads(page[2])["code"] == "unauthenticated"
        page, general = both(
            service.web_url, "ListLeases", leases, {"authorization": f"Bearer {uma}"}
        )
        assert page == general and page[0] == 200
        assert queue_pb2.ListLeasesResponse.FromString(page[2]).worker_id == "uma"
    finally:
        service.kill()


def _scope(path: str, headers: dict[str, str], method: str = "POST") -> dict:
    return {
        "type": "http",
        "method": method,
        "path": SERVICE + path,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


def test_only_the_page_shape_takes_the_path(tmp_path: Path) -> None:
    from queue_service.store.facade import Store

    async def check() -> None:
        store = await Store.open(f"sqlite:///{tmp_path / 'q.db'}")
        try:
            from queue_service.auth import Authenticator
            from queue_service.config import Settings
            from queue_service.service import QueueService

            service = QueueService(store, Settings(), Authenticator(store, False))
            path = UnaryPath(service, 1 << 20)
            for method in ("Submit", "Pop", "Release", "Undo", "ListLeases", "GetProject"):
                assert path.take(_scope(method, PAGE)) is not None, method
            taken = path.take(_scope("Pop", {**PAGE, "content-encoding": "identity"}))
            assert taken is not None and taken[b"content-type"] == b"application/proto"
            refused = [
                _scope("Pop", GENERAL),  # a deadline
                _scope("Pop", {**PAGE, "content-type": "application/json"}),
                _scope("Pop", {**PAGE, "content-type": "application/proto; charset=x"}),
                _scope("Pop", {**PAGE, "content-encoding": "gzip"}),
                _scope("Pop", {**PAGE, "connect-protocol-version": "2"}),
                _scope("Pop", PAGE, method="GET"),
                _scope("CreateProject", PAGE),  # not one of the page's calls
                _scope("WatchProgress", PAGE),  # a stream
            ]
            # two content-types: the first counts, as connectrpc reads it
            twice = _scope("Pop", PAGE)
            twice["headers"].insert(0, (b"content-type", b"application/json"))
            refused.append(twice)
            assert all(path.take(scope) is None for scope in refused)
            with pytest.raises(ValueError, match="stream"):
                UnaryPath(service, 1 << 20, ["WatchProgress"])
        finally:
            await store.close()

    asyncio.run(check())
