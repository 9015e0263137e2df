"""Generate the Python contract package `labelgrid_proto` from `protos/labelgrid/v1/*.proto`.

    python protos/generate.py            # write protos/python/labelgrid_proto/v1/
    python protos/generate.py --check    # exit 1 if the committed stubs differ

protoc names generated modules after the proto paths (`labelgrid.v1`); the contract package
is `labelgrid_proto.v1` so that it sits apart from the hand-written client package
(`labelgrid`) and imports nothing of ours. The one rewrite is that import prefix, as
Temporal's Python SDK does for its `temporalio.api` package.

The queue service is also generated for Connect (`queue_connect.py`, by the PyPI plugin
`protoc-gen-connectrpc` over the same `queue_pb2` messages): the queue service serves it to
browsers over HTTP (queue_service/web/). Its imports are relative, so it needs no rewrite.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROTOS = sorted((ROOT / "labelgrid" / "v1").glob("*.proto"))
OUT = ROOT / "python" / "labelgrid_proto" / "v1"
IMPORT = re.compile(rb"^(from|import) labelgrid\.v1\b", re.MULTILINE)
# services served over Connect (HTTP, for browsers) as well as gRPC
CONNECT_PROTOS = [ROOT / "labelgrid" / "v1" / "queue.proto"]
GENERATED = ("*_pb2*.py*", "*_connect.py")


def connect_plugin() -> str:
    """The `protoc-gen-connectrpc` executable: beside this Python, else on PATH."""
    here = Path(sys.executable).parent / "protoc-gen-connectrpc"
    found = str(here) if here.exists() else shutil.which("protoc-gen-connectrpc")
    if not found:
        sys.exit("protoc-gen-connectrpc not found: pip install 'labelgrid[dev]'")
    return found


def generate() -> dict[str, bytes]:
    """The generated files by name, with their imports pointing at `labelgrid_proto.v1`."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{ROOT}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                *map(str, PROTOS),
            ],
            check=True,
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{ROOT}",
                f"--plugin=protoc-gen-connectrpc={connect_plugin()}",
                f"--connectrpc_out={tmp}",
                "--connectrpc_opt=protobuf=google",
                *map(str, CONNECT_PROTOS),
            ],
            check=True,
        )
        out = Path(tmp) / "labelgrid" / "v1"
        return {
            p.name: IMPORT.sub(rb"\1 labelgrid_proto.v1", p.read_bytes())
            for p in sorted(out.iterdir())
            if p.is_file()
        }


def committed() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for pattern in GENERATED for p in sorted(OUT.glob(pattern))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args()
    fresh = generate()
    if args.check:
        stale = sorted(set(fresh.items()) ^ set(committed().items()))
        names = sorted({name for name, _ in stale})
        if names:
            print(f"stale generated stubs: {', '.join(names)}; run `make protos`", file=sys.stderr)
            return 1
        return 0
    for old in (p for pattern in GENERATED for p in OUT.glob(pattern)):
        if old.name not in fresh:
            old.unlink()
    for name, data in fresh.items():
        (OUT / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
