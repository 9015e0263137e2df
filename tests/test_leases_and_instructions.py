"""ListLeases (a worker's own live leases) and project instructions, over gRPC, on SQLite and
PostgreSQL: what the web app relies on to give a returning labeller their items back."""

from __future__ import annotations

import time

import grpc
import pytest

from labelgrid import QueueClient
from labelgrid_proto.v1 import queue_pb2
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query
from tests.test_security import make_token, refused


def test_list_leases_single_lease_projects(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["a", "b"], lease_seconds=2)
    client.add_features(project_name, ["x0", "x1", "x2", "x3", "x4"])
    assert client.list_leases(project_name, "ann") == []
    first, second = client.pop(project_name, "ann", n=2)
    [other] = client.pop(project_name, "bob")
    mine = client.list_leases(project_name, "ann")
    # oldest lease first, with the very tokens and inputs Pop gave
    assert [(i.id, i.lease_token, i.input) for i in mine] == [
        (first.id, first.lease_token, "x0"),
        (second.id, second.lease_token, "x1"),
    ]
    assert abs(mine[0].lease_expires_at - first.lease_expires_at) < 1e-3
    assert [i.id for i in client.list_leases(project_name, "bob")] == [other.id]
    # a submit with pop_next: the submitted item goes, the next one comes, after `second`
    reply = client.submit(project_name, first, "a", "ann", pop_next=True)
    assert [i.id for i in client.list_leases(project_name, "ann")] == [second.id, reply.next.id]
    # the leases are usable: a submit with a listed token is accepted
    listed = client.list_leases(project_name, "ann")[0]
    client.submit(project_name, listed, "b", "ann")
    client.release(project_name, client.list_leases(project_name, "ann")[0], "ann")
    assert client.list_leases(project_name, "ann") == []
    # an expired lease is not live any more
    time.sleep(2.2)
    assert client.list_leases(project_name, "bob") == []
    with pytest.raises(grpc.RpcError) as err:
        client.list_leases("no-such-project", "ann")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        client.list_leases(project_name, "")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_leases_overlap_projects(client: QueueClient, project_name: str) -> None:
    """Shared items keep their leases in `assignments`; review items carry the others'
    labels, as Pop gives them."""
    client.create_project(
        project_name, ["a", "b"], overlap=2, review_threshold=1.0, reviewers=["rev"]
    )
    client.add_features(project_name, ["s0", "s1", "s2"])
    ann = client.pop(project_name, "ann", n=2)
    bob = client.pop(project_name, "bob", n=2)
    assert [i.id for i in ann] == [i.id for i in bob]  # each item has two slots
    listed = client.list_leases(project_name, "ann")
    assert [(i.id, i.lease_token) for i in listed] == [(i.id, i.lease_token) for i in ann]
    client.submit(project_name, ann[0], "a", "ann")
    client.submit(project_name, bob[0], "b", "bob")  # disagreement: the item goes to review
    assert [i.id for i in client.list_leases(project_name, "ann")] == [ann[1].id]
    [review] = client.pop(project_name, "rev")
    assert review.id == ann[0].id
    [listed_review] = client.list_leases(project_name, "rev")
    assert listed_review.lease_token == review.lease_token
    assert sorted(listed_review.others) == [("ann", ("a",)), ("bob", ("b",))]
    client.release(project_name, ann[1], "ann")
    assert client.list_leases(project_name, "ann") == []


def test_labeller_tokens_list_their_own_leases(database_url: str) -> None:
    service = ServiceProcess(
        database_url, {"LABELGRID_AUTH": "true", "LABELGRID_AUTH_CACHE_SECONDS": "0"}
    ).start()
    try:
        admin = make_token(database_url, "root", "admin")
        tina = make_token(database_url, "tina", "labeller", "p")
        with QueueClient(service.address, token=admin, retries=0) as root:
            root.create_project("p", ["a"])
            root.add_features("p", ["x", "y"])
            root.pop("p", "someone")
        with QueueClient(service.address, token=tina, retries=0) as labeller:
            [item] = labeller.pop("p", "")
            # the token's name is the worker: an empty worker_id lists tina's leases
            reply = labeller.stub.ListLeases(queue_pb2.ListLeasesRequest(project="p"))
            assert reply.worker_id == "tina"
            assert [i.id for i in reply.items] == [item.id]
            refused(
                database_url,
                lambda: labeller.list_leases("p", "someone"),
                grpc.StatusCode.PERMISSION_DENIED,
                "tina",
            )
            refused(
                database_url,
                lambda: labeller.set_instructions("p", "do it"),
                grpc.StatusCode.PERMISSION_DENIED,
                "SetProjectInstructions",
            )
    finally:
        service.kill()


def test_instructions_are_stored_and_changed(
    client: QueueClient, project_name: str, database_url: str
) -> None:
    made = client.create_project(project_name, ["a"], instructions="# Label *a*")
    assert made.instructions == "# Label *a*"
    assert client.get_project(project_name).instructions == "# Label *a*"
    # not a setting: the same project again with other instructions is the existing one
    again = client.create_project(project_name, ["a"], instructions="other", exist_ok=True)
    assert again.instructions == "# Label *a*"
    assert client.set_instructions(project_name, "new **text**").instructions == "new **text**"
    assert client.get_project(project_name).instructions == "new **text**"
    assert [p.instructions for p in client.list_projects() if p.name == project_name] == [
        "new **text**"
    ]
    assert client.set_instructions(project_name, "").instructions == ""
    assert query(database_url, "SELECT instructions FROM projects") == [(None,)]
    with pytest.raises(grpc.RpcError) as err:
        client.set_instructions(project_name, "x" * 100_001)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 100000" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.set_instructions("missing", "x")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
