"""The committed contract package must be what the protos generate today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_stubs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "protos" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_labelgrid_v1_is_the_contract_package() -> None:
    """Users' `labelgrid.v1` imports keep working and give the very same classes."""
    import labelgrid.v1.queue_pb2 as old_path
    import labelgrid_proto.v1.queue_pb2 as contract
    from labelgrid.v1 import trainer_pb2
    from labelgrid_proto.v1 import trainer_pb2 as contract_trainer

    assert old_path is contract
    assert trainer_pb2 is contract_trainer
    assert old_path.PopRequest is contract.PopRequest
