"""Installs follow the layers: `pip install labelgrid` is the thin client, the rest extras."""

from __future__ import annotations

import json
import os
import re
import subprocess
import venv
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import IN_CI

# Under pytest-xdist this module runs whole on one worker (tests/conftest.py, ONE_WORKER), so
# its module-scoped base install (a pip install of this checkout, ~10 s) is made once.
ROOT = Path(__file__).resolve().parents[1]
# Server, trainer and notebook packages the thin client must never pull in.
FORBIDDEN = {
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "alembic",
    "psycopg",
    "psycopg-binary",
    "scikit-learn",
    "scipy",
    "krippendorff",
    "ipywidgets",
    "ipyevents",
    "ipython",
    "ipykernel",
    "matplotlib",
    "pillow",
    "voila",
    "pandas",
    "grpcio-reflection",
    "pyarrow",
    "dask",
    "distributed",
    "connectrpc",
    "uvicorn",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(extras: tuple[str, ...] = ()) -> set[str]:
    """Every distribution the labelgrid install (with these extras) pulls in, read from the
    installed metadata (markers evaluated for this interpreter)."""
    seen: set[str] = set()
    todo = [(req, extras) for req in metadata.requires("labelgrid") or []]
    while todo:
        text, active = todo.pop()
        req = Requirement(text)
        envs = [{"extra": e} for e in active] or [{"extra": ""}]
        if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
            continue
        name = _norm(req.name)
        if name == "labelgrid":  # labelgrid[page] -> labelgrid[widgets] ...
            todo.extend((r, tuple(req.extras)) for r in metadata.requires("labelgrid") or [])
            continue
        if name in seen:
            continue
        seen.add(name)
        todo.extend((r, tuple(req.extras)) for r in metadata.requires(req.name) or [])
    return seen


def test_the_base_install_pulls_no_server_or_notebook_package() -> None:
    base = closure()
    assert {"grpcio", "protobuf", "numpy"} <= base
    assert base & FORBIDDEN == set()
    assert len(base) <= 8, sorted(base)


def test_the_extras_carry_the_servers() -> None:
    assert {"sqlalchemy", "asyncpg", "aiosqlite", "alembic"} <= closure(("queue",))
    assert "scikit-learn" in closure(("trainer",))
    assert {"ipywidgets", "ipyevents"} <= closure(("widgets",))
    assert "voila" in closure(("page",))
    assert "pyarrow" in closure(("export",))
    assert FORBIDDEN - {"connectrpc", "uvicorn"} <= closure(("all",)) | {"psycopg-binary"}


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with a plain `pip install <this repo>` (from the package index)."""
    where = tmp_path_factory.mktemp("base-install") / "venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    if result.returncode != 0:
        if IN_CI:
            pytest.fail(f"pip install failed:\n{result.stderr[-3000:]}")
        pytest.skip(f"pip install failed (no package index?): {result.stderr[-300:]}")
    return where


def test_a_real_base_install(base_venv: Path) -> None:
    listed = subprocess.run(
        [str(base_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {_norm(p["name"]) for p in json.loads(listed.stdout)}
    assert {"labelgrid", "grpcio", "protobuf", "numpy"} <= names
    assert names & FORBIDDEN == set()
    client = subprocess.run(
        [
            str(base_venv / "bin" / "python"),
            "-c",
            "import numpy as np, labelgrid.aio, labelgrid.trainer_client\n"
            "from labelgrid import QueueClient\n"
            "from labelgrid.v1 import queue_pb2\n"
            "from labelgrid.arrays import decode, encode\n"
            "a = np.arange(6, dtype='<u2').reshape(2, 3)\n"
            "assert (decode(encode(a)) == a).all()\n"
            "print(QueueClient.__name__, queue_pb2.PopRequest.DESCRIPTOR.full_name)",
        ],
        capture_output=True,
        text=True,
        cwd=base_venv,
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout.split() == ["QueueClient", "labelgrid.v1.PopRequest"]


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["queue", "serve"], "queue"),
        (["trainer", "serve"], "trainer"),
        (["stack"], "queue"),
        (["export", "birds", "--format", "parquet", "--output", "birds.parquet"], "export"),
    ],
)
def test_a_missing_extra_names_the_command(base_venv: Path, args: list[str], extra: str) -> None:
    result = subprocess.run(
        [str(base_venv / "bin" / "labelgrid"), *args], capture_output=True, text=True, cwd=base_venv
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"pip install 'labelgrid[{extra}]'" in lines[0]


def test_widgets_without_the_extra(base_venv: Path) -> None:
    result = subprocess.run(
        [
            str(base_venv / "bin" / "python"),
            "-c",
            "from labelgrid.distributed import SemiSupervisor",
        ],
        capture_output=True,
        text=True,
        cwd=base_venv,
    )
    assert result.returncode == 1
    assert "MissingExtra" in result.stderr
    assert "pip install 'labelgrid[widgets]'" in result.stderr.strip().splitlines()[-1]
