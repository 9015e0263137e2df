"""Authentication, roles, project scopes, TLS and limits, against real servers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from labelgrid import QueueClient
from tests.support import certs
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query, snapshot

Code = grpc.StatusCode


def labelgrid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labelgrid.cli", *args], capture_output=True, text=True, timeout=120
    )


def make_token(database_url: str, name: str, role: str, *projects: str) -> str:
    extra = [arg for p in projects for arg in ("--project", p)]
    out = labelgrid(
        "token", "--database-url", database_url, "create", "--name", name, "--role", role, *extra
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def refused(database_url: str, call, code: Code, *words: str) -> None:
    before = snapshot(database_url)
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, err.value.details()
    for word in words:
        assert word in err.value.details()
    assert snapshot(database_url) == before


@pytest.fixture
def secured(database_url: str):
    proc = ServiceProcess(
        database_url, env={"LABELGRID_AUTH": "true", "LABELGRID_AUTH_CACHE_SECONDS": "0"}
    ).start()
    yield proc
    proc.kill()


def test_roles_tokens_and_project_scopes(secured: ServiceProcess, database_url: str) -> None:
    admin = make_token(database_url, "root", "admin")
    trainer = make_token(database_url, "model", "trainer")
    alice = make_token(database_url, "alice", "labeller", "cats")
    assert admin.startswith("lg_") and len(admin) > 40
    stored = query(database_url, "SELECT name, token_hash FROM tokens ORDER BY id")
    assert [n for n, _ in stored] == ["root", "model", "alice"]
    assert all(len(h) == 64 and h not in (admin, trainer, alice) for _, h in stored)
    assert admin not in str(snapshot(database_url))  # only hashes are kept

    address = secured.address
    with QueueClient(address, token=admin, retries=0) as root:
        root.create_project("cats", ["cat", "not"])
        root.create_project("dogs", ["dog", "not"])
        root.add_features("cats", ["c1", "c2", "c3"])
        root.add_features("dogs", ["d1"])
    anonymous = QueueClient(address, token="", retries=0)
    refused(database_url, lambda: anonymous.pop("cats", "x"), Code.UNAUTHENTICATED, "Bearer")
    forged = QueueClient(address, token="lg_forged", retries=0)
    refused(database_url, lambda: forged.pop("cats", "x"), Code.UNAUTHENTICATED, "unknown")

    labeller = QueueClient(address, token=alice, retries=0)
    refused(
        database_url,
        lambda: labeller.create_project("mine", ["a"]),
        Code.PERMISSION_DENIED,
        "labeller",
        "CreateProject",
    )
    refused(database_url, lambda: labeller.add_features("cats", ["x"]), Code.PERMISSION_DENIED)
    refused(database_url, lambda: labeller.export_labels("cats"), Code.PERMISSION_DENIED)
    refused(database_url, lambda: labeller.pop("dogs", "alice"), Code.PERMISSION_DENIED, "dogs")
    refused(database_url, lambda: labeller.pop("cats", "bob"), Code.PERMISSION_DENIED, "alice")
    assert [p.name for p in labeller.list_projects()] == ["cats"]
    item = labeller.pop("cats", "")[0]  # the worker id comes from the token
    assert query(database_url, f"SELECT leased_by FROM items WHERE id = {item.id}") == [("alice",)]
    refused(
        database_url,
        lambda: labeller.submit("cats", item, "cat", "mallory"),
        Code.PERMISSION_DENIED,
    )
    labeller.submit("cats", item, "cat", "alice")
    # other workers' agreement and statistics are for admins and trainers
    refused(database_url, lambda: labeller.agreement("cats"), Code.PERMISSION_DENIED)
    refused(
        database_url,
        lambda: labeller.progress("cats", worker_stats=True),
        Code.PERMISSION_DENIED,
        "GetAgreement",
    )
    assert labeller.progress("cats").labelled == 1

    # the CLI's reads carry a token too, and a refusal is one line, not a traceback
    agreement = ["agreement", "--server", address, "--project", "cats", "--json"]
    assert int(json.loads(labelgrid(*agreement, "--token", admin).stdout)["annotations"]) == 1
    denied = labelgrid(*agreement, "--token", alice)
    assert denied.returncode == 1 and "Traceback" not in denied.stderr
    assert denied.stderr.startswith("labelgrid agreement: PERMISSION_DENIED: ")

    model = QueueClient(address, token=trainer, retries=0)
    refused(database_url, lambda: model.pop("cats", "model"), Code.PERMISSION_DENIED, "trainer")
    assert [i.item_id for c in model.stream_labelled("cats") for i in c.items] == [item.id]
    model.update_priorities("cats", [item.id + 1], [3.0], model_version=1)
    assert model.agreement("cats").annotations == 1

    revoke = labelgrid("token", "--database-url", database_url, "revoke", "alice")
    assert revoke.returncode == 0, revoke.stderr
    refused(database_url, lambda: labeller.pop("cats", ""), Code.UNAUTHENTICATED, "revoked")
    listing = labelgrid("token", "--database-url", database_url, "list").stdout
    assert "alice" in listing and alice not in listing and "revoked_at" in listing


def test_non_loopback_address_needs_auth(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    out = labelgrid("queue", "serve", "--address", "0.0.0.0:0", "--database-url", url)
    assert out.returncode == 2 and "without authentication" in out.stderr
    assert "--insecure-no-auth" in out.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_tls_and_client_certificates(database_url: str, tmp_path: Path, project_name: str) -> None:
    paths = certs.make(tmp_path)
    tls = {"LABELGRID_TLS_CERT": paths["server.crt"], "LABELGRID_TLS_KEY": paths["server.key"]}
    proc = ServiceProcess(database_url, env=tls).start()
    try:
        with QueueClient(proc.address, tls_ca=paths["ca.crt"], retries=0) as client:
            client.create_project(project_name, ["a"])
            assert client.get_project(project_name).name == project_name
        health = ["health", "--address", proc.address, "--timeout", "10"]
        checked = labelgrid(*health, "--tls-ca", paths["ca.crt"])
        assert checked.returncode == 0 and checked.stdout.strip() == "SERVING", checked.stderr
        assert labelgrid(*health).returncode == 1  # a plaintext probe cannot reach a TLS port
        with (
            QueueClient(proc.address, retries=0, timeout=3) as plain,
            pytest.raises(grpc.RpcError) as err,
        ):
            plain.list_projects()
        assert err.value.code() == Code.UNAVAILABLE
    finally:
        proc.kill()
    mutual = ServiceProcess(
        database_url, env={**tls, "LABELGRID_TLS_CLIENT_CA": paths["ca.crt"]}
    ).start()
    try:
        with (
            QueueClient(mutual.address, tls_ca=paths["ca.crt"], retries=0, timeout=3) as anon,
            pytest.raises(grpc.RpcError) as err,
        ):
            anon.list_projects()
        assert err.value.code() == Code.UNAVAILABLE
        with QueueClient(
            mutual.address,
            tls_ca=paths["ca.crt"],
            tls_cert=paths["client.crt"],
            tls_key=paths["client.key"],
            retries=0,
        ) as client:
            assert [p.name for p in client.list_projects()] == [project_name]
        health = ["health", "--address", mutual.address, "--tls-ca", paths["ca.crt"]]
        assert labelgrid(*health).returncode == 1  # no client certificate
        mine = ["--tls-cert", paths["client.crt"], "--tls-key", paths["client.key"]]
        checked = labelgrid(*health, *mine)
        assert checked.returncode == 0 and checked.stdout.strip() == "SERVING", checked.stderr
    finally:
        mutual.kill()


def test_limits_name_themselves(database_url: str, project_name: str) -> None:
    proc = ServiceProcess(
        database_url,
        env={"LABELGRID_MAX_ARRAY_BYTES": "1000", "LABELGRID_MAX_LEASES_PER_WORKER": "3"},
    ).start()
    try:
        with QueueClient(proc.address, retries=0) as client:
            client.create_project(project_name, ["a"])
            refused(
                database_url,
                lambda: client.add_features(project_name, np.zeros((2, 300), np.float32)),
                Code.RESOURCE_EXHAUSTED,
                "LABELGRID_MAX_ARRAY_BYTES",
                "1000",
            )
            client.add_features(project_name, np.zeros((6, 10), np.float32))
            assert len(client.pop(project_name, "w", n=2)) == 2
            refused(
                database_url,
                lambda: client.pop(project_name, "w", n=2),
                Code.RESOURCE_EXHAUSTED,
                "LABELGRID_MAX_LEASES_PER_WORKER",
                "3",
            )
            assert len(client.pop(project_name, "w", n=1)) == 1
            assert len(client.pop(project_name, "other", n=3)) == 3
    finally:
        proc.kill()


def test_taken_ports_are_refused_in_one_line(tmp_path: Path) -> None:
    """A second server on a taken port must fail (no SO_REUSEPORT sharing) and say why."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = f"127.0.0.1:{held.getsockname()[1]}"
        for command in (
            ["queue", "serve", "--address", taken, "--database-url", url],
            ["queue", "serve", "--address", "127.0.0.1:0", "--web-address", taken,
             "--database-url", url],
            ["trainer", "serve", "--address", taken, "--queue", "127.0.0.1:1"],
        ):  # fmt: skip
            out = labelgrid(*command)
            assert out.returncode == 2, (command, out.stderr)
            assert f"labelgrid: cannot listen on {taken}" in out.stderr, out.stderr
            assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr
