"""Real queue-service processes for tests, on loopback ports chosen by the OS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc


class ServiceProcess:
    """`labelgrid queue serve` in a child process; `address` is known once it has started."""

    started = '"queue service started"'

    def __init__(self, database_url: str, env: dict[str, str] | None = None, *extra: str) -> None:
        self.database_url = database_url
        self.extra = list(extra)  # more `queue serve` flags, e.g. "--web-address", "127.0.0.1:0"
        self.web_port = 0
        self.env = {**os.environ, **(env or {})}
        self.log = Path(tempfile.mkstemp(prefix="labelgrid-queue-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self.port = 0
        #: the port of /metrics when started with a metrics address (0: none)
        self.metrics_port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "labelgrid.cli",
            "queue",
            "serve",
            "--address",
            "127.0.0.1:0",
            "--database-url",
            self.database_url,
            *self.extra,
        ]

    @property
    def web_url(self) -> str:
        """The web app's base URL (started with --web-address)."""
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 60) -> ServiceProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if self.started in line and line.startswith("{"):
                    entry = json.loads(line)
                    if entry.get("pid", self.proc.pid) == self.proc.pid:
                        self.port = entry["port"]
                        self.web_port = entry.get("web_port", 0)
                        self.metrics_port = entry.get("metrics_port", 0)
            if self.port and self.proc.poll() is None:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"queue service did not start:\n{self.log.read_text()[-3000:]}")

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def logs(self) -> str:
        return self.log.read_text()

    def tail(self, chars: int = 4000) -> str:
        """The end of the log, for a failure's message."""
        return self.logs()[-chars:]


class TrainerProcess(ServiceProcess):
    """`labelgrid trainer serve --queue …` in a child process."""

    started = '"trainer service started"'

    def __init__(self, queue_address: str, env: dict[str, str] | None = None) -> None:
        super().__init__("", env)
        self.extra = []
        self.queue_address = queue_address
        # each trainer its own feature cache (not the user's ~/.cache)
        self.env.setdefault(
            "LABELGRID_TRAINER_CACHE_DIR", tempfile.mkdtemp(prefix="labelgrid-trainer-cache-")
        )

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "labelgrid.cli",
            "trainer",
            "serve",
            "--address",
            "127.0.0.1:0",
            "--queue",
            self.queue_address,
        ]


#: auth on, and no token cache (a revoked token fails on its next call)
AUTH = {"LABELGRID_AUTH": "true", "LABELGRID_AUTH_CACHE_SECONDS": "0"}


def secured_web(database_url: str) -> ServiceProcess:
    """A started queue service with auth on and the web app on a free loopback port."""
    return ServiceProcess(database_url, AUTH, "--web-address", "127.0.0.1:0").start()
