"""The committed stubs must be what the protos generate today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "clients" / "python" / "labelgrid" / "v1"


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    protos = sorted((ROOT / "protos" / "labelgrid" / "v1").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *map(str, protos),
        ],
        check=True,
    )
    fresh = sorted(
        p.relative_to(tmp_path / "labelgrid" / "v1")
        for p in (tmp_path / "labelgrid" / "v1").iterdir()
    )
    committed = sorted(p.relative_to(STUBS) for p in STUBS.glob("*_pb2*.py*"))
    assert fresh == committed, "stub files differ: run `make protos`"
    for name in fresh:
        assert (tmp_path / "labelgrid" / "v1" / name).read_bytes() == (STUBS / name).read_bytes(), (
            f"{name} is stale: run `make protos` and commit the result"
        )
