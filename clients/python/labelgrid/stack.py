"""`labelgrid stack`: the whole stack on one machine, for `make run` and for trying it out.

Starts the queue service (which also serves the labelling web app over HTTP), adds the demo
dataset once, and starts the trainer, on localhost; Ctrl-C (or SIGTERM) stops everything.
The Voila page (`page_command`, `labelgrid page`) is no longer part of it: one Python kernel
per visitor; it stays available for notebook users with their own display function.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

PAGE = Path(__file__).parent / "pages" / "label.ipynb"


def wait_serving(address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no service became healthy at {address}")
            time.sleep(0.2)


def page_command(port: int, notebook: Path = PAGE, ip: str = "127.0.0.1") -> list[str]:
    """The Voila labelling page (`labelgrid page`), optional: the stack serves the web app."""
    return [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--port={port}",
        "--no-browser",
        f"--Voila.ip={ip}",
        "--show_tracebacks=True",
    ]


def run_stack(
    database_url: str,
    queue_address: str,
    trainer_address: str,
    page_port: int,
    demo: bool = True,
    trainer: bool = True,
    page: bool = True,
) -> int:
    from labelgrid.client import QueueClient
    from labelgrid.demo import DEMO_PROJECT, seed_demo

    env = {**os.environ, "LABELGRID_SERVER": queue_address, "LABELGRID_PROJECT": DEMO_PROJECT}
    children: list[subprocess.Popen] = []

    def start(cmd: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=env)
        children.append(proc)
        return proc

    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        start(
            [
                sys.executable,
                "-m",
                "labelgrid.cli",
                "queue",
                "serve",
                "--address",
                queue_address,
                "--database-url",
                database_url,
                *(["--web-address", f"127.0.0.1:{page_port}"] if page else []),
            ]
        )
        wait_serving(queue_address)
        if demo:
            with QueueClient(queue_address) as client:
                n = seed_demo(client)
            print(f"demo project {DEMO_PROJECT!r}: {n} digit images", flush=True)
        if trainer:
            start(
                [
                    sys.executable,
                    "-m",
                    "labelgrid.cli",
                    "trainer",
                    "serve",
                    "--address",
                    trainer_address,
                    "--queue",
                    queue_address,
                ]
            )
            wait_serving(trainer_address)
            if demo:
                from labelgrid.trainer_client import TrainerClient

                with TrainerClient(trainer_address) as tc:
                    tc.start_job(
                        DEMO_PROJECT,
                        "sklearn.linear_model:LogisticRegression",
                        {"max_iter": 2000},
                        acquisition="margin",
                        interval_seconds=10,
                        interval_n_labels=10,
                    )
        if page:
            project = f"?project={DEMO_PROJECT}" if demo else ""
            print(f"labelling web app: http://127.0.0.1:{page_port}/{project}", flush=True)
        while not stop and all(c.poll() is None for c in children):
            time.sleep(0.5)
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [c.args[2:5] for c in children if c.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed and not stop else 0
