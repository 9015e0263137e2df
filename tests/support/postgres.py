"""A throwaway PostgreSQL server from the local binaries, run as an unprivileged user."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.ports import free_port

PG_BIN = Path(os.environ.get("LABELGRID_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = os.environ.get("LABELGRID_PG_USER", "postgres")


def available() -> str | None:
    """None when a server can be started here, else the reason it cannot."""
    if not (PG_BIN / "postgres").exists():
        return f"no PostgreSQL binaries in {PG_BIN} (set LABELGRID_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no {PG_USER!r} user to run PostgreSQL as"
    return None


class Postgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="labelgrid-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_USER)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._prefix = ["runuser", "-u", PG_USER, "--"]
        else:
            self._prefix = []

    def _run(self, *args: str) -> None:
        subprocess.run([*self._prefix, *args], check=True, capture_output=True)

    def start(self) -> Postgres:
        if not self.data.exists():
            self._run(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
        log = open(self.dir / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [
                *self._prefix,
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise RuntimeError((self.dir / "postgres.log").read_text()[-2000:]) from None
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        if self.proc and self.proc.poll() is None:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", mode, "-w")
            self.proc.wait(30)

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"
