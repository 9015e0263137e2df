"""The contract follows Buf's style rules and does not break what the last commit published."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
BUF = ROOT / "clients" / "node" / "node_modules" / ".bin" / "buf"


def _buf() -> str:
    if not BUF.exists():
        reason = "buf missing: run `make node-deps` (npm's @bufbuild/buf)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return str(BUF)


def test_buf_lint() -> None:
    out = subprocess.run([_buf(), "lint", "protos"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_buf_breaking_against_previous_commit() -> None:
    buf = _buf()
    has_parent = (
        subprocess.run(
            ["git", "rev-parse", "--verify", "HEAD~1"], cwd=ROOT, capture_output=True
        ).returncode
        == 0
    )
    if not has_parent:
        pytest.skip("no previous commit to compare with")
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "HEAD~1", "protos/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    if ".proto" not in listed:
        pytest.skip("the previous commit has no protos")
    out = subprocess.run(
        [buf, "breaking", "protos", "--against", ".git#ref=HEAD~1,subdir=protos"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
