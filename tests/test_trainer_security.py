"""The trainer service's authentication, roles, project scopes and TLS, against real
processes: a queue service with --auth, a trainer with --auth checking tokens with it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from labelgrid import QueueClient
from labelgrid.trainer_client import TrainerClient
from tests.support import certs
from tests.support.servers import ServiceProcess, TrainerProcess
from tests.test_security import make_token

Code = grpc.StatusCode
MODEL = "sklearn.linear_model:LogisticRegression"
REVOKE = ("revoke", "model")
SQLITE = pytest.mark.parametrize("backend", ["sqlite"])

# method -> roles that may call it (the rest get PERMISSION_DENIED)
ALLOWED = {
    "StartJob": {"admin"},
    "RetrainNow": {"admin"},
    "ListJobs": {"admin", "trainer"},
    "GetStatus": {"admin", "trainer"},
    "WatchStatus": {"admin", "trainer"},
    "StopJob": {"admin"},
}


def calls(project: str) -> dict[str, Callable[[TrainerClient], object]]:
    return {
        "StartJob": lambda tc: tc.start_job(
            project, MODEL, {"max_iter": 500}, interval_seconds=3600
        ),
        "RetrainNow": lambda tc: tc.retrain_now(project, timeout=120),
        "ListJobs": lambda tc: tc.list_jobs(),
        "GetStatus": lambda tc: tc.status(project),
        "WatchStatus": lambda tc: next(iter(tc.watch(project))),
        "StopJob": lambda tc: tc.stop_job(project),
    }


@pytest.fixture
def stack(database_url: str, project_name: str) -> Iterator[dict]:
    """A queue service and a trainer, both with auth; tokens of every role; a project with
    labelled items."""
    queue = ServiceProcess(
        database_url, env={"LABELGRID_AUTH": "true", "LABELGRID_AUTH_CACHE_SECONDS": "0"}
    ).start()
    tokens = {
        "admin": make_token(database_url, "root", "admin"),
        "trainer": make_token(database_url, "model", "trainer"),
        "labeller": make_token(database_url, "alice", "labeller"),
        "other-admin": make_token(database_url, "other", "admin", "elsewhere"),
    }
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    with QueueClient(queue.address, token=tokens["admin"], retries=0) as admin:
        admin.create_project(project_name, ["0", "1"])
        admin.add_features(project_name, X)
        for item in admin.pop(project_name, "w", n=40):
            admin.submit(project_name, item, str(int(item.input[0] > 0)), "w")
    trainer = TrainerProcess(
        queue.address,
        env={
            "LABELGRID_AUTH": "true",
            "LABELGRID_AUTH_CACHE_SECONDS": "0",
            "LABELGRID_TOKEN": tokens["trainer"],  # its own calls to the queue
        },
    ).start()
    try:
        yield {"queue": queue, "trainer": trainer, "tokens": tokens}
    finally:
        trainer.kill()
        queue.kill()


@SQLITE
def test_each_role_on_each_trainer_rpc(stack: dict, database_url: str, project_name: str) -> None:
    address = stack["trainer"].address
    tokens = stack["tokens"]
    rpcs = calls(project_name)
    for method, call in rpcs.items():
        for who, token in (("nobody", ""), ("forged", "lg_forged")):
            with TrainerClient(address, token=token) as tc, pytest.raises(grpc.RpcError) as err:
                call(tc)
            assert err.value.code() == Code.UNAUTHENTICATED, (method, who)
        for role in ("labeller", "trainer", "admin"):
            with TrainerClient(address, token=tokens[role]) as tc:
                if role in ALLOWED[method]:
                    call(tc)
                    continue
                with pytest.raises(grpc.RpcError) as err:
                    call(tc)
                assert err.value.code() == Code.PERMISSION_DENIED, (method, role)
                assert role in err.value.details() and method in err.value.details()
        if method == "RetrainNow":
            # the job's own calls to the queue went with the trainer's token: it read the
            # labels and pushed priorities under a new model version
            with QueueClient(stack["queue"].address, token=tokens["admin"]) as admin:
                assert admin.get_project(project_name).model_version >= 1
                runs = admin.list_training_runs(project_name)
                assert runs and runs[-1].status == "ok"


@SQLITE
def test_project_scope_revocation_and_an_open_queue(
    stack: dict, database_url: str, project_name: str
) -> None:
    address = stack["trainer"].address
    tokens = stack["tokens"]
    with TrainerClient(address, token=tokens["admin"]) as admin:
        admin.start_job(project_name, MODEL, {"max_iter": 500}, interval_seconds=3600)
    # an admin bound to other projects neither sees nor controls this one
    with TrainerClient(address, token=tokens["other-admin"]) as other:
        assert other.list_jobs() == []
        for call in (
            lambda: other.status(project_name),
            lambda: other.stop_job(project_name),
            lambda: other.start_job(project_name, MODEL),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == Code.PERMISSION_DENIED
            assert project_name in err.value.details()
    # a revoked token stops working on the trainer too (cache 0 here; 5 s by default)
    with TrainerClient(address, token=tokens["trainer"]) as reader:
        assert reader.status(project_name).state == "running"
        revoked = subprocess.run(
            [
                sys.executable,
                "-m",
                "labelgrid.cli",
                "token",
                "--database-url",
                database_url,
                *REVOKE,
            ],
            capture_output=True,
            text=True,
        )
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises(grpc.RpcError) as err:
            reader.status(project_name)
        assert err.value.code() == Code.UNAUTHENTICATED and "revoked" in err.value.details()
    with TrainerClient(address, token=tokens["admin"]) as admin:
        admin.stop_job(project_name)


@SQLITE
def test_trainer_with_auth_refuses_when_the_queue_cannot_check_tokens(
    database_url: str, project_name: str
) -> None:
    queue = ServiceProcess(database_url).start()  # no --auth
    trainer = TrainerProcess(queue.address, env={"LABELGRID_AUTH": "true"}).start()
    try:
        with TrainerClient(trainer.address, token="lg_anything") as tc:
            with pytest.raises(grpc.RpcError) as err:
                tc.list_jobs()
        assert err.value.code() == Code.FAILED_PRECONDITION
        assert "without --auth" in err.value.details()
    finally:
        trainer.kill()
        queue.kill()


def test_non_loopback_trainer_address_needs_auth() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "labelgrid.cli", "trainer", "serve", "--address", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "without authentication" in out.stderr
    assert "--insecure-no-auth" in out.stderr


@SQLITE
def test_trainer_tls_and_client_certificates(
    database_url: str, tmp_path: Path, project_name: str
) -> None:
    paths = certs.make(tmp_path)
    queue = ServiceProcess(database_url).start()
    tls = {"LABELGRID_TLS_CERT": paths["server.crt"], "LABELGRID_TLS_KEY": paths["server.key"]}
    try:
        trainer = TrainerProcess(queue.address, env=tls).start()
        try:
            with TrainerClient(trainer.address, tls_ca=paths["ca.crt"]) as tc:
                assert tc.list_jobs() == []
            with TrainerClient(trainer.address, timeout=3) as plain:
                with pytest.raises(grpc.RpcError) as err:
                    plain.list_jobs()
            assert err.value.code() == Code.UNAVAILABLE
        finally:
            trainer.kill()
        mutual = TrainerProcess(
            queue.address, env={**tls, "LABELGRID_TLS_CLIENT_CA": paths["ca.crt"]}
        ).start()
        try:
            with TrainerClient(mutual.address, tls_ca=paths["ca.crt"], timeout=3) as anon:
                with pytest.raises(grpc.RpcError) as err:
                    anon.list_jobs()
            assert err.value.code() == Code.UNAVAILABLE
            with TrainerClient(
                mutual.address,
                tls_ca=paths["ca.crt"],
                tls_cert=paths["client.crt"],
                tls_key=paths["client.key"],
            ) as tc:
                assert tc.list_jobs() == []
        finally:
            mutual.kill()
    finally:
        queue.kill()
