"""The docker-compose deployment, checked without a Docker engine.

1. The file is consistent: real entry points, agreeing ports and environment, health checks,
   declared volumes, a pinned non-root image.
2. A compose-equivalent run: the same commands with the same environment, as local processes
   against a throwaway PostgreSQL, and a short labelling session through them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest

from labelgrid import QueueClient
from labelgrid.cli import build_parser
from labelgrid.trainer_client import TrainerClient
from tests.support import compose, postgres
from tests.support.ports import free_port

LABELGRID_SERVICES = ["tokens", "queue", "seed", "trainer", "notebook"]


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1]


def _arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_compose_file_is_consistent() -> None:
    text = compose.COMPOSE.read_text()
    env = compose.env_file()
    missing = compose.variables(text) - set(env) - {"LABELGRID_VERSION"}
    assert not missing, f"variables not in .env.example: {missing}"
    spec = compose.load(env)
    services = spec["services"]
    assert set(services) == {"postgres", *LABELGRID_SERVICES}

    parser = build_parser()
    for name in LABELGRID_SERVICES:
        command = services[name]["command"]
        assert command[0] == "labelgrid", name
        parser.parse_args(command[1:])  # a real subcommand with real flags (exits otherwise)

    queue_port = env["QUEUE_PORT"]
    assert _port(_arg(services["queue"]["command"], "--address")) == queue_port
    web_port = env["WEB_PORT"]
    assert _port(_arg(services["queue"]["command"], "--web-address")) == web_port
    metrics_port = env["QUEUE_METRICS_PORT"]
    assert _port(_arg(services["queue"]["command"], "--metrics-address")) == metrics_port
    assert services["queue"]["ports"] == [
        f"{port}:{port}" for port in (queue_port, web_port, metrics_port)
    ]
    assert _arg(services["seed"]["command"], "--server") == f"queue:{queue_port}"
    assert _arg(services["trainer"]["command"], "--queue") == f"queue:{queue_port}"
    assert services["notebook"]["environment"]["LABELGRID_SERVER"] == f"queue:{queue_port}"
    trainer_port = _port(_arg(services["trainer"]["command"], "--address"))
    assert trainer_port == env["TRAINER_PORT"]
    assert services["trainer"]["ports"][0] == f"{trainer_port}:{trainer_port}"
    # metrics: each service serves them on its own published port
    for name, variable in (("queue", "QUEUE_METRICS_PORT"), ("trainer", "TRAINER_METRICS_PORT")):
        metrics_port = _port(_arg(services[name]["command"], "--metrics-address"))
        assert metrics_port == env[variable]
        assert f"{metrics_port}:{metrics_port}" in services[name]["ports"]
    page_port = _arg(services["notebook"]["command"], "--port")
    assert services["notebook"]["ports"] == [f"{page_port}:{page_port}"]

    # the queue's database URL names the postgres service and its credentials
    url = services["queue"]["environment"]["LABELGRID_DATABASE_URL"]
    pg_env = services["postgres"]["environment"]
    assert url == (
        f"postgresql://{pg_env['POSTGRES_USER']}:{pg_env['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{pg_env['POSTGRES_DB']}"
    )

    # health: postgres by pg_isready; every labelgrid container by the image's gRPC check,
    # pointed at its own service
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["queue"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["trainer"]["depends_on"]["queue"]["condition"] == "service_healthy"
    assert _port(services["queue"]["environment"]["LABELGRID_HEALTH_ADDRESS"]) == queue_port
    assert _port(services["trainer"]["environment"]["LABELGRID_HEALTH_ADDRESS"]) == trainer_port
    dockerfile = compose.DOCKERFILE.read_text()
    health = next(line for line in dockerfile.splitlines() if line.strip().startswith("CMD ["))
    assert '"labelgrid", "health"' in health
    parser.parse_args(["health"])

    # volumes used are declared
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used <= set(spec["volumes"])

    # the image: pinned base, unprivileged user, no secrets baked in
    base = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM"))
    assert ":" in base and "latest" not in base and base.split(":")[1][0].isdigit()
    assert any(line.startswith("USER ") and "root" not in line for line in dockerfile.splitlines())
    assert "PASSWORD" not in dockerfile and "TOKEN" not in dockerfile
    assert env["POSTGRES_PASSWORD"] == "change-me"

    # both servers are published beyond loopback, so they run with auth; each client has a token
    assert "--auth" in services["queue"]["command"]
    assert "--auth" in services["trainer"]["command"]
    assert services["queue"]["depends_on"]["tokens"]["condition"] == (
        "service_completed_successfully"
    )
    stored = {spec.split(":")[2] for spec in services["tokens"]["command"][4::2]}
    for name, variable in (
        ("seed", "LABELGRID_ADMIN_TOKEN"),
        ("trainer", "LABELGRID_TRAINER_TOKEN"),
        ("notebook", "LABELGRID_PAGE_TOKEN"),
    ):
        assert services[name]["environment"]["LABELGRID_TOKEN"] == env[variable]
        assert variable in stored


def _localise(value: str, pg_port: int) -> str:
    """Compose's network names and wildcard binds, mapped onto this machine's loopback."""
    return (
        value.replace("@postgres:5432", f"@127.0.0.1:{pg_port}")
        .replace("queue:", "127.0.0.1:")
        .replace("0.0.0.0", "127.0.0.1")
    )


@pytest.fixture
def compose_pg(pg: postgres.Postgres) -> Iterator[tuple[dict[str, str], postgres.Postgres]]:
    env = compose.env_file()
    env.update(
        QUEUE_PORT=str(free_port()),
        TRAINER_PORT=str(free_port()),
        QUEUE_METRICS_PORT=str(free_port()),
        TRAINER_METRICS_PORT=str(free_port()),
        PAGE_PORT=str(free_port()),
        WEB_PORT=str(free_port()),
        POSTGRES_DB="compose_" + os.urandom(4).hex(),
        TRAINER_INTERVAL_SECONDS="0.5",
        TRAINER_INTERVAL_N_LABELS="10",
    )
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (env["POSTGRES_USER"],)
        ).fetchone()
        if not exists:
            conn.execute(
                f"CREATE ROLE {env['POSTGRES_USER']} LOGIN PASSWORD '{env['POSTGRES_PASSWORD']}'"
            )
        conn.execute(f"CREATE DATABASE {env['POSTGRES_DB']} OWNER {env['POSTGRES_USER']}")
    yield env, pg


def test_compose_equivalent_session(compose_pg, tmp_path: Path) -> None:
    env, pg = compose_pg
    services = compose.load(env)["services"]
    procs: dict[str, subprocess.Popen] = {}

    def launch(name: str) -> subprocess.Popen:
        service = services[name]
        command = [_localise(part, pg.port) for part in service["command"]]
        environ = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter")}
        environ.update(
            {k: _localise(str(v), pg.port) for k, v in service.get("environment", {}).items()}
        )
        bin_dir = Path(sys.executable).parent
        log = open(tmp_path / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [str(bin_dir / command[0]), *command[1:]],
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs[name] = proc
        return proc

    def healthy(name: str) -> None:
        environ = {
            k: _localise(str(v), pg.port) for k, v in services[name].get("environment", {}).items()
        }
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [str(Path(sys.executable).parent / "labelgrid"), "health"],
                env={**os.environ, **environ},
                capture_output=True,
            ).returncode
            != 0
        ):
            assert procs[name].poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{name} never became healthy"
            time.sleep(0.3)

    queue_address = f"127.0.0.1:{env['QUEUE_PORT']}"
    try:
        assert launch("tokens").wait(120) == 0
        assert launch("tokens").wait(120) == 0  # a second run finds them present
        launch("queue")
        healthy("queue")
        assert launch("seed").wait(120) == 0
        assert launch("seed").wait(120) == 0  # a restart of the seeding adds nothing
        launch("trainer")
        healthy("trainer")
        launch("notebook")
        with QueueClient(queue_address, token="", retries=0) as anonymous:
            with pytest.raises(grpc.RpcError) as err:
                anonymous.list_projects()
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with QueueClient(queue_address, token=env["LABELGRID_ADMIN_TOKEN"]) as client:
            assert client.progress(env["LABELGRID_PROJECT"]).total == 1797
            from sklearn.datasets import load_digits

            digits = load_digits()
            truth = {
                digits.images[i].astype("float32").tobytes(): str(digits.target[i])
                for i in range(len(digits.target))
            }
            for _ in range(40):
                item = client.pop(env["LABELGRID_PROJECT"], "compose-user")[0]
                client.submit(
                    env["LABELGRID_PROJECT"], item, truth[item.input.tobytes()], "compose-user"
                )
            trainer_address = f"127.0.0.1:{env['TRAINER_PORT']}"
            with (
                TrainerClient(trainer_address, token="") as anonymous_trainer,
                pytest.raises(grpc.RpcError) as err,
            ):
                anonymous_trainer.list_jobs()
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with TrainerClient(trainer_address, token=env["LABELGRID_ADMIN_TOKEN"]) as trainer:
                deadline = time.monotonic() + 60
                while (status := trainer.status(env["LABELGRID_PROJECT"])).runs < 1:
                    assert time.monotonic() < deadline, "the trainer never ran"
                    time.sleep(0.3)
            assert status.spec.acquisition == env["TRAINER_ACQUISITION"]
            assert status.last_run.status in ("ok", "not_enough_labels")
            assert client.get_project(env["LABELGRID_PROJECT"]).model_version >= 1 or (
                status.last_run.status == "not_enough_labels"
            )
        # the web app, from the queue service: the page is public, every call needs a token
        web = f"http://127.0.0.1:{env['WEB_PORT']}"
        with urllib.request.urlopen(web + "/", timeout=30) as reply:
            assert reply.status == 200 and b"labelgrid" in reply.read()
        call = urllib.request.Request(
            web + "/labelgrid.v1.QueueService/ListLeases",
            data=b'{"project": "digits", "workerId": "web-user"}',
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {env['LABELGRID_PAGE_TOKEN']}",
            },
        )
        with urllib.request.urlopen(call, timeout=30) as reply:
            assert json.loads(reply.read())["workerId"] == "web-user"
        for variable, metric in (
            ("QUEUE_METRICS_PORT", "labelgrid_queue_items_unlabelled"),
            ("TRAINER_METRICS_PORT", "labelgrid_training_runs_total"),
        ):
            url = f"http://127.0.0.1:{env[variable]}/metrics"
            with urllib.request.urlopen(url, timeout=10) as reply:
                assert metric in reply.read().decode()
        page = f"http://127.0.0.1:{env['PAGE_PORT']}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(page, timeout=30) as reply:
                    assert reply.status == 200 and b"voila" in reply.read().lower()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "notebook.log").read_text()
                time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert procs["queue"].returncode == 0, shlex.join(services["queue"]["command"])
