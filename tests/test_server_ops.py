"""Operations: health, reflection, configuration by environment, graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from labelgrid import QueueClient
from labelgrid.cli import build_parser
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query


def test_health_and_reflection(service: ServiceProcess) -> None:
    with service.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "labelgrid.v1.QueueService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"labelgrid.v1.QueueService", "grpc.health.v1.Health"} <= services


@pytest.mark.parametrize(
    ("command", "variable", "value", "words"),
    [
        ("queue serve", "LABELGRID_PROGRESS_MIN_SECONDS", "soon", "is not a valid value"),
        ("queue serve", "LABELGRID_DB_POOL_SIZE", "-3", "give a number of 0 or more"),
        ("queue serve", "LABELGRID_AUTH", "maybe", "is not a boolean"),
        ("trainer serve", "LABELGRID_TRAINER_SCORE_BUDGET", "all", "is not a valid value"),
        ("token list", "LABELGRID_HEALTH_INTERVAL", "nan", "give a number of 0 or more"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, command: str, variable: str, value: str, words: str
) -> None:
    env = {
        **os.environ,
        "LABELGRID_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        variable: value,
    }
    extra = ["--address", "127.0.0.1:0"] if command.endswith("serve") else []
    if command == "trainer serve":
        extra += ["--queue", "127.0.0.1:1"]
    done = subprocess.run(
        [sys.executable, "-m", "labelgrid.cli", *command.split(), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"labelgrid: {variable}={value!r}" + (
        f": {words}" if words.startswith("give") else f" {words}"
    )
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["queue", "serve", "--max-message-bytes", "-3"], "'-3': give a number of 1 or more"),
        (["health", "--timeout", "nan"], "'nan': give a number of 0 or more"),
        (["health", "--timeout", "soon"], "'soon' is not a number"),
        (["stack", "--page-port", "70000"], "give a number of 0 or more and at most 65535"),
        (["trainer", "run-once", "--project", "p", "--shuffle-prop", "2"], "at most 1"),
    ],
)
def test_a_bad_flag_is_argparses_one_line_error(argv: list[str], words: str, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: argument" in last and words in last


def test_environment_configures_the_service(tmp_path: Path) -> None:
    db = tmp_path / "from-env.db"
    env = {"LABELGRID_DATABASE_URL": f"sqlite:///{db}", "LABELGRID_MAX_POP": "5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelgrid.cli", "queue", "serve", "--address", "127.0.0.1:0"],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert '"queue service started"' in line, line
        port = int(line.split('"port": ')[1].split(",")[0])
        with QueueClient(f"127.0.0.1:{port}", retries=0) as client:
            client.create_project("p", ["x"])
            client.add_features("p", ["a"])
            with pytest.raises(grpc.RpcError) as err:
                client.pop("p", "w", n=6)
            assert "between 1 and 5" in err.value.details()
        assert db.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_sigterm_lets_in_flight_calls_finish(database_url: str, project_name: str) -> None:
    proc = ServiceProcess(database_url).start()
    with QueueClient(proc.address, retries=0) as client:
        client.create_project(project_name, ["x"])
        client.add_features(project_name, ["a"])
        # a follow stream is in flight when SIGTERM arrives; the server must still exit 0
        stream = client.stream_labelled(project_name, follow=True, labels_only=True)
        got: list[object] = []
        reader = threading.Thread(target=lambda: got.append(list(stream)), daemon=True)
        reader.start()
        big = np.zeros((20_000, 64), np.float32)
        adder = threading.Thread(target=lambda: got.append(client.add_features(project_name, big)))
        adder.start()
        time.sleep(0.3)
        assert proc.terminate() == 0
        adder.join(30)
        reader.join(30)
    assert "shutting down" in proc.logs() and "queue service stopped" in proc.logs()
    # the follow stream ended cleanly (an empty list, no exception) ...
    assert [] in got
    # ... and the upload is either stored whole or was never acknowledged
    stored = query(database_url, "SELECT COUNT(*) FROM items")[0][0]
    acked = [g for g in got if isinstance(g, list) and g]
    assert stored in (1, 1 + 20_000)
    if acked:
        assert stored == 1 + 20_000 and len(acked[0]) == 20_000


def test_cli_defaults() -> None:
    args = build_parser().parse_args(["queue", "serve"])
    assert args.address is None  # falls back to LABELGRID_ADDRESS, then 127.0.0.1:50051
    from queue_service.config import Settings

    settings = Settings.from_env()
    assert settings.address == os.environ.get("LABELGRID_ADDRESS", "127.0.0.1:50051")
    assert settings.database_url.endswith("labelgrid.db")
