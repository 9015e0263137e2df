"""API tokens through the service (CreateToken, ListTokens, RevokeToken, WhoAmI): what a
front end uses to invite a labeller. Values are shown once and stored hashed; only admins
not bound to projects manage tokens; the CLI keeps working beside them (test_security)."""

from __future__ import annotations

import grpc
import pytest

from labelgrid import QueueClient
from labelgrid_proto.v1 import queue_pb2
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query, snapshot
from tests.test_security import make_token, refused

Code = grpc.StatusCode


@pytest.fixture
def secured(database_url: str):
    # the default cache (5 s): a revoke on this replica must still take effect at once
    proc = ServiceProcess(database_url, env={"LABELGRID_AUTH": "true"}).start()
    yield proc
    proc.kill()


def test_create_list_revoke_through_the_service(secured: ServiceProcess, database_url: str) -> None:
    root = make_token(database_url, "root", "admin")  # the first admin comes from the CLI
    with QueueClient(secured.address, token=root, retries=0) as admin:
        admin.create_project("cats", ["cat", "not"])
        admin.create_project("dogs", ["dog", "not"])
        admin.add_features("cats", ["c1", "c2"])
        admin.add_features("dogs", ["d1"])

        value, token = admin.create_token("alice", "labeller", ["cats"])
        assert value.startswith("lg_") and len(value) > 40
        assert token.name == "alice" and token.role == queue_pb2.ROLE_LABELLER
        assert list(token.projects) == ["cats"] and not token.HasField("revoked_at")
        assert token.created_at.seconds > 0
        stored = dict(query(database_url, "SELECT name, token_hash FROM tokens"))
        assert len(stored["alice"]) == 64 and stored["alice"] != value
        assert value not in str(snapshot(database_url))  # only the hash is kept

        # the invited labeller works at once, as itself, on its project only
        with QueueClient(secured.address, token=value, retries=0) as alice:
            who = alice.whoami()
            assert who.auth_enabled and who.token.name == "alice"
            assert who.token.role == queue_pb2.ROLE_LABELLER
            item = alice.pop("cats", "")[0]
            alice.submit("cats", item, "cat", "alice")
            refused(database_url, lambda: alice.pop("dogs", ""), Code.PERMISSION_DENIED, "dogs")

            listed = {t.name: t for t in admin.list_tokens()}
            assert set(listed) == {"root", "alice"}
            assert listed["root"].role == queue_pb2.ROLE_ADMIN and not listed["root"].projects
            assert value not in str(admin.list_tokens()) and root not in str(listed)

            admin.revoke_token("alice")
            # revoked on this replica at once, although lookups are cached for 5 s
            refused(database_url, lambda: alice.pop("cats", ""), Code.UNAUTHENTICATED, "revoked")
        listed = {t.name: t for t in admin.list_tokens()}
        assert listed["alice"].HasField("revoked_at")

        # a front end's token for the shared labelling page
        page_value, page = admin.create_token("page", "labeller", any_worker=True)
        assert page.any_worker and not page.projects
        with QueueClient(secured.address, token=page_value, retries=0) as front:
            front.pop("dogs", "bob")  # names its workers itself


def test_token_rpcs_refused(secured: ServiceProcess, database_url: str) -> None:
    root = make_token(database_url, "root", "admin")
    bound = make_token(database_url, "cats-admin", "admin", "cats")
    trainer = make_token(database_url, "model", "trainer")
    labeller = make_token(database_url, "alice", "labeller")
    address = secured.address

    with QueueClient(address, token="", retries=0) as anonymous:
        refused(database_url, lambda: anonymous.list_tokens(), Code.UNAUTHENTICATED)
        refused(database_url, lambda: anonymous.whoami(), Code.UNAUTHENTICATED)
    for token, words in (
        (labeller, ("labeller", "CreateToken")),
        (trainer, ("trainer", "CreateToken")),
        (bound, ("not bound to projects",)),
    ):
        with QueueClient(address, token=token, retries=0) as caller:
            refused(
                database_url,
                lambda c=caller: c.create_token("eve", "admin"),
                Code.PERMISSION_DENIED,
                *words,
            )
            refused(database_url, lambda c=caller: c.list_tokens(), Code.PERMISSION_DENIED)
            refused(database_url, lambda c=caller: c.revoke_token("root"), Code.PERMISSION_DENIED)
            assert caller.whoami().auth_enabled  # every valid token may ask who it is
    with QueueClient(address, token=trainer, retries=0) as model:
        assert model.whoami().token.role == queue_pb2.ROLE_TRAINER
    with QueueClient(address, token=bound, retries=0) as cats_admin:
        assert list(cats_admin.whoami().token.projects) == ["cats"]

    with QueueClient(address, token=root, retries=0) as admin:
        stub = admin.stub
        bad = [
            (queue_pb2.CreateTokenRequest(name="", role=queue_pb2.ROLE_ADMIN), "name is empty"),
            (queue_pb2.CreateTokenRequest(name="x"), "ROLE_ADMIN"),
            (
                queue_pb2.CreateTokenRequest(name="x", role=queue_pb2.ROLE_ADMIN, any_worker=True),
                "labeller tokens only",
            ),
        ]
        for request, words in bad:
            refused(
                database_url,
                lambda r=request: stub.CreateToken(r, timeout=10),
                Code.INVALID_ARGUMENT,
                words,
            )
        refused(
            database_url,
            lambda: admin.create_token("model", "trainer"),
            Code.ALREADY_EXISTS,
            "model",
        )
        refused(database_url, lambda: admin.revoke_token("nobody"), Code.NOT_FOUND, "nobody")
        with pytest.raises(ValueError, match="unknown role"):
            admin.create_token("x", "superuser")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_whoami_on_an_open_service(service: ServiceProcess) -> None:
    with QueueClient(service.address, retries=0) as client:
        who = client.whoami()
        assert not who.auth_enabled and not who.HasField("token")
