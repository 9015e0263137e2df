"""A client in another language: Node.js with @grpc/grpc-js, loading protos/ directly."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from labelgrid import QueueClient
from tests.conftest import IN_CI
from tests.support.servers import ServiceProcess

NODE_CLIENT = Path(__file__).resolve().parents[1] / "clients" / "node"


def _node() -> str:
    node = shutil.which("node")
    ready = node and (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").exists()
    if not ready:
        reason = "node or clients/node/node_modules missing (run `make node-deps`)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return node


def test_node_client_pops_submits_and_reads_progress(
    service: ServiceProcess, project_name: str
) -> None:
    node = _node()
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["even", "odd"])
        ids = client.add_features(
            project_name, np.repeat(np.arange(6, dtype=np.int32), 2).reshape(6, 2)
        )
        out = subprocess.run(
            [node, str(NODE_CLIENT / "cli.js"), service.address, project_name, "node-worker", "4"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert [r["id"] for r in result["labelled"]] == ids[:4]
        assert [r["label"] for r in result["labelled"]] == ["even", "odd", "even", "odd"]
        assert {r["dtype"] for r in result["labelled"]} == {"<i4"}
        assert result["progress"] == {"total": 6, "labelled": 4}
        assert result["refused"]["code"] == 3 and "worker_id" in result["refused"]["details"]
        exported = client.export_labels(project_name)
    assert [(e.item_id, e.worker_id, list(e.labels)) for e in exported] == [
        (i, "node-worker", [lab]) for i, lab in zip(ids[:4], ["even", "odd"] * 2, strict=True)
    ]


def test_node_client_reads_agreement_and_review_labels(
    service: ServiceProcess, project_name: str
) -> None:
    node = _node()
    with QueueClient(service.address) as client:
        client.create_project(
            project_name, ["a", "b"], overlap=2, review_threshold=1.0, reviewers=["judge"]
        )
        client.add_features(project_name, ["x", "y"])
        for worker, labels in (("w1", "ab"), ("w2", "aa")):
            items = sorted(client.pop(project_name, worker, n=2), key=lambda it: it.id)
            for it, label in zip(items, labels, strict=True):
                client.submit(project_name, it, label, worker)
    script = f"""
      const {{ QueueClient }} = require({json.dumps(str(NODE_CLIENT / "client.js"))});
      (async () => {{
        const c = new QueueClient({json.dumps(service.address)});
        const agreement = await c.agreement({json.dumps(project_name)});
        const [item] = await c.pop({json.dumps(project_name)}, 'judge');
        console.log(JSON.stringify({{ agreement, others: item.others }}));
        c.close();
      }})().catch((e) => {{ console.error(e); process.exit(1); }});
    """
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["agreement"]["items"] == 2
    assert result["agreement"]["percent"] == pytest.approx(0.5)
    assert result["others"] == [
        {"workerId": "w1", "labels": ["b"]},
        {"workerId": "w2", "labels": ["a"]},
    ]
