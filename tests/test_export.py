"""Exports (labelgrid.export, `labelgrid export`) on both backends through a real queue
service: labels by several workers with overlap and disagreement, a multi-label project and
a label that needs CSV quoting; every format read back and compared with what was submitted
(annotation ids and times from the plain ExportLabels RPC, consensus by hand and from the
RPC's own consensus rows)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from labelgrid import QueueClient, export
from labelgrid_proto import exportfile
from labelgrid_proto.v1 import arrays_pb2, queue_pb2
from tests.support.servers import ServiceProcess

# commas, quotes, a newline, a carriage return and non-ASCII: CSV must quote and keep them all
AWKWARD = 'say "hi", then\r\nbye; ünïcødé ✓'
OPTIONS = ["cat", "dog", AWKWARD]
META = {0: {"source": "camera-1", "note": 'ßüé, "quoted"\nline'}, 2: {"n": 3}}

# item index -> what w1, w2, w3 say (None: skipped, so the item stays incomplete)
SINGLE = {
    0: ["cat", "cat", "dog"],
    1: [AWKWARD, AWKWARD, AWKWARD],
    2: ["dog", "cat", "dog"],
    3: ["cat", None, None],
}
# majority by hand: (label, confidence), None for the incomplete item
MAJORITY = {0: (["cat"], 2 / 3), 1: ([AWKWARD], 1.0), 2: (["dog"], 2 / 3), 3: None}

MULTI = {
    0: [["a", "b"], ["a"]],
    1: [["c"], ["b", "c"]],
    2: [["a"], ["b", "c"]],
}
MULTI_MAJORITY = {0: ["a"], 1: ["c"], 2: []}  # each label given by more than half of 2

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def add_items(client: QueueClient, project: str, n: int) -> list[int]:
    """n text items, some with metadata (the client's add_features sends none)."""
    items = [
        queue_pb2.NewItem(
            input=arrays_pb2.Payload(text=f"item {i}"),
            metadata_json=json.dumps(META[i]) if i in META else "",
        )
        for i in range(n)
    ]
    request = queue_pb2.AddFeaturesRequest(project=project, items=items)
    return list(client.stub.AddFeatures(iter([request])).ids)


def label_all(
    client: QueueClient, project: str, plan: dict[int, list], ids: list[int]
) -> list[tuple[int, str, list[str]]]:
    """Each worker pops every item and says what the plan says; returns what was submitted."""
    submitted = []
    for w in range(len(plan[0])):
        worker = f"w{w + 1}"
        popped = {it.id: it for it in client.pop(project, worker, n=len(ids))}
        assert set(popped) == set(ids)
        for index, item_id in enumerate(ids):
            labels = plan[index][w]
            if labels is None:
                client.release(project, popped[item_id], worker)
                continue
            client.submit(project, popped[item_id], labels, worker)
            submitted.append((item_id, worker, labels if isinstance(labels, list) else [labels]))
    return submitted


@pytest.fixture
def crowd(client: QueueClient, project_name: str) -> dict:
    """A single-label project with overlap 3, labelled with disagreement."""
    client.create_project(project_name, OPTIONS, overlap=3)
    ids = add_items(client, project_name, len(SINGLE))
    submitted = label_all(client, project_name, SINGLE, ids)
    raw = {r.annotation_id: r for r in client.export_labels(project_name)}
    assert len(raw) == len(submitted) == 10
    return {"ids": ids, "submitted": submitted, "raw": raw}


def expected(client: QueueClient, project: str, ids: list[int], consensus: dict | None) -> list:
    """The rows an export must hold, as dicts of Python values, in (item, annotation) order:
    annotation ids and times from the plain ExportLabels RPC (annotation-id order)."""
    out = []
    for r in sorted(client.export_labels(project), key=lambda r: (r.item_id, r.annotation_id)):
        index = ids.index(r.item_id)
        row = {
            "item_id": r.item_id,
            "annotation_id": r.annotation_id,
            "worker_id": r.worker_id,
            "labels": list(r.labels),
            "created_at": r.created_at.ToDatetime(tzinfo=UTC),
            "metadata": META.get(index),
        }
        if consensus is not None:
            found = consensus[index]
            row["consensus"] = None if found is None else found[0]
            row["consensus_confidence"] = None if found is None else found[1]
        out.append(row)
    return out


def export_bytes(client: QueueClient, project: str, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    export.write(client, project, fmt, out, **kw)
    return out.getvalue()


def read_csv(data: bytes, multi_label: bool) -> list[dict]:
    text = data.decode("utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    for r in reader:
        labels = json.loads(r["labels"]) if multi_label else [r["labels"]]
        row = {
            "item_id": int(r["item_id"]),
            "annotation_id": int(r["annotation_id"]),
            "worker_id": r["worker_id"],
            "labels": labels,
            "created_at": _when(r["created_at"]),
            "metadata": json.loads(r["metadata"]) if r["metadata"] else None,
        }
        if "consensus" in r:
            if r["consensus"] == "" and r["consensus_confidence"] == "":
                row["consensus"] = row["consensus_confidence"] = None
            else:
                row["consensus"] = json.loads(r["consensus"]) if multi_label else [r["consensus"]]
                row["consensus_confidence"] = float(r["consensus_confidence"])
        rows.append(row)
    return rows


def read_jsonl(data: bytes) -> list[dict]:
    rows = []
    for line in data.decode("utf-8").splitlines():
        row = json.loads(line)
        row["created_at"] = _when(row["created_at"])
        rows.append(row)
    return rows


def read_parquet(data: bytes) -> list[dict]:
    rows = pq.read_table(io.BytesIO(data)).to_pylist()
    for row in rows:
        row["metadata"] = None if row["metadata"] is None else json.loads(row["metadata"])
    return rows


def _when(text: str) -> datetime:
    assert ISO.match(text), text
    return datetime.fromisoformat(text)


READERS = {
    "csv": lambda data, multi: read_csv(data, multi),
    "jsonl": lambda data, multi: read_jsonl(data),
    "parquet": lambda data, multi: read_parquet(data),
}


def approx_rows(rows: list[dict]) -> list[dict]:
    """Confidences compared to 1e-9 (2/3 by hand vs the server's float)."""
    return [
        {**r, "consensus_confidence": pytest.approx(r["consensus_confidence"], abs=1e-9)}
        if r.get("consensus_confidence") is not None
        else r
        for r in rows
    ]


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_each_format_reads_back_as_submitted(
    client: QueueClient, project_name: str, crowd: dict, fmt: str
) -> None:
    out = io.BytesIO()
    written = export.write(client, project_name, fmt, out)  # overlap 3: majority by default
    rows = READERS[fmt](out.getvalue(), False)
    assert written == len(rows) == 10
    want = expected(client, project_name, crowd["ids"], MAJORITY)
    assert rows == approx_rows(want)
    # what was submitted, worker by worker, label by label
    assert sorted((r["item_id"], r["worker_id"], r["labels"]) for r in rows) == sorted(
        crowd["submitted"]
    )
    assert [r["labels"] for r in rows if r["item_id"] == crowd["ids"][1]] == [[AWKWARD]] * 3
    if fmt != "csv":  # the column order (CSV's header: test_csv_quotes_what_needs_it)
        assert list(rows[0]) == [*export.COLUMNS, *export.CONSENSUS_COLUMNS]


def test_csv_quotes_what_needs_it(client: QueueClient, project_name: str, crowd: dict) -> None:
    data = export_bytes(client, project_name, "csv")
    header, _ = data.split(b"\r\n", 1)
    assert (
        header == b"item_id,annotation_id,worker_id,labels,created_at,metadata,consensus,"
        b"consensus_confidence"
    )
    quoted = '"say ""hi"", then\r\nbye; ünïcødé ✓"'.encode()
    assert data.count(quoted) == 3 + 3  # three labels, and the consensus on each of the rows


def test_dawid_skene_and_no_consensus(client: QueueClient, project_name: str, crowd: dict) -> None:
    ds = {
        r.item_id: (list(r.labels), r.confidence)
        for r in client.export_labels(project_name, consensus="dawid_skene")
    }
    assert len(ds) == 3  # the incomplete item has none
    by_index = {i: ds.get(item_id) for i, item_id in enumerate(crowd["ids"])}
    for fmt in export.FORMATS:
        data = export_bytes(client, project_name, fmt, consensus="dawid_skene")
        rows = READERS[fmt](data, False)
        assert rows == approx_rows(expected(client, project_name, crowd["ids"], by_index)), fmt
        plain = READERS[fmt](export_bytes(client, project_name, fmt, consensus="none"), False)
        assert plain == expected(client, project_name, crowd["ids"], None), fmt
        assert "consensus" not in plain[0]


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_a_multi_label_project(client: QueueClient, project_name: str, fmt: str) -> None:
    client.create_project(project_name, ["a", "b", "c"], multi_label=True, overlap=2)
    ids = add_items(client, project_name, len(MULTI))
    submitted = label_all(client, project_name, MULTI, ids)
    rpc = {r.item_id: r for r in client.export_labels(project_name, consensus="majority")}
    assert {ids.index(k): list(v.labels) for k, v in rpc.items()} == MULTI_MAJORITY
    consensus = {i: (MULTI_MAJORITY[i], rpc[item_id].confidence) for i, item_id in enumerate(ids)}
    rows = READERS[fmt](export_bytes(client, project_name, fmt), True)
    assert rows == approx_rows(expected(client, project_name, ids, consensus))
    assert sorted((r["item_id"], r["worker_id"], r["labels"]) for r in rows) == sorted(submitted)
    if fmt == "csv":
        assert b'"[""a"", ""b""]"' in export_bytes(client, project_name, fmt)


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_overlap_one_has_no_consensus_columns_and_imports_show(
    client: QueueClient, project_name: str, fmt: str
) -> None:
    client.create_project(project_name, ["x", "y"])
    ids = client.add_features(project_name, ["one", "two", "three"], labels=["y", None, "x"])
    [item] = client.pop(project_name, "bob")
    client.submit(project_name, item, "x", "bob")
    rows = READERS[fmt](export_bytes(client, project_name, fmt), False)
    assert [(r["item_id"], r["worker_id"], r["labels"]) for r in rows] == [
        (ids[0], "(import)", ["y"]),
        (ids[1], "bob", ["x"]),
        (ids[2], "(import)", ["x"]),
    ]
    assert all("consensus" not in r for r in rows)


def test_streams_in_pieces(
    client: QueueClient, project_name: str, crowd: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small replies and row groups: the bytes come in several chunks, and Parquet has a
    row group per ROW_GROUP rows, the file still reading back whole."""
    monkeypatch.setattr(exportfile, "ROW_GROUP", 3)  # where the encoder lives
    whole = READERS["parquet"](export_bytes(client, project_name, "parquet"), False)
    for fmt in export.FORMATS:
        parts = list(export.chunks(client, project_name, fmt, chunk_size=1))
        assert len(parts) == 4, fmt  # one per reply (an item each); Parquet: per row group
        data = b"".join(parts)
        assert READERS[fmt](data, False) == whole, fmt
    pieces = b"".join(export.chunks(client, project_name, "parquet", chunk_size=1))
    assert pq.ParquetFile(io.BytesIO(pieces)).metadata.num_row_groups == 4  # 10 rows by 3


def test_bad_arguments(client: QueueClient, project_name: str, crowd: dict) -> None:
    with pytest.raises(ValueError, match="unknown format 'xlsx'"):
        export.write(client, project_name, "xlsx", io.BytesIO())
    with pytest.raises(ValueError, match="unknown consensus 'mean'"):
        export.write(client, project_name, "csv", io.BytesIO(), consensus="mean")


# -- the command ------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labelgrid.cli", "export", *args],
        capture_output=True,
        timeout=120,
    )


def test_the_command_writes_each_format(
    client: QueueClient, project_name: str, crowd: dict, tmp_path: Path
) -> None:
    want = approx_rows(expected(client, project_name, crowd["ids"], MAJORITY))
    where = tmp_path / "exports"  # tmp_path also holds the SQLite database
    where.mkdir()
    for fmt in export.FORMATS:
        target = where / f"out.{fmt}"
        done = run_cli(project_name, "--server", client.address, "--format", fmt, "-o", str(target))
        assert done.returncode == 0, done.stderr
        assert done.stderr.decode().strip() == f"exported 10 rows of {project_name!r} to {target}"
        assert READERS[fmt](target.read_bytes(), False) == want, fmt
    # to stdout, and the same bytes as the function gives
    done = run_cli(project_name, "--server", client.address, "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    assert done.stdout == export_bytes(client, project_name, "jsonl")
    assert done.stderr == b""
    assert sorted(where.iterdir()) == [where / f"out.{f}" for f in sorted(export.FORMATS)]


def test_the_command_on_an_unknown_project(client: QueueClient, tmp_path: Path) -> None:
    where = tmp_path / "exports"
    where.mkdir()
    target = where / "none.csv"
    done = run_cli("no-such-project", "--server", client.address, "-o", str(target))
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labelgrid: export failed: NOT_FOUND"), lines
    assert list(where.iterdir()) == []  # no file, not even a partial one


def test_parquet_without_pyarrow_says_what_to_install(tmp_path: Path) -> None:
    """pyarrow made unimportable in a fresh interpreter: the command fails in one line naming
    the extra before it connects anywhere, and so does the function."""
    target = tmp_path / "x.parquet"
    code = (
        "import sys\n"
        "sys.modules['pyarrow'] = None\n"
        "from labelgrid.cli import main\n"
        f"sys.exit(main(['export', 'birds', '--server', '127.0.0.1:9', '--format', 'parquet', "
        f"'-o', {str(target)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "labelgrid[export]" in lines[0] and "pip install 'labelgrid[export]'" in lines[0]
    assert not target.exists()
    code = (
        "import io, sys\n"
        "sys.modules['pyarrow'] = None\n"
        "from labelgrid import QueueClient, export\n"
        "from labelgrid.extras import MissingExtra\n"
        "try:\n"
        "    export.chunks(QueueClient('127.0.0.1:9'), 'birds', 'parquet')\n"
        "except MissingExtra as exc:\n"
        "    print(exc)\n"
        "export.method_for  # CSV and JSON lines need no pyarrow: the module imports\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("a Parquet export needs labelgrid[export]"), done.stdout


def test_the_command_with_tokens(database_url: str, tmp_path: Path) -> None:
    """With --auth: an admin token (--token) exports; a trainer token is refused in one
    line, leaving no file."""
    from tests.test_security import make_token

    secured = ServiceProcess(
        database_url, env={"LABELGRID_AUTH": "true", "LABELGRID_AUTH_CACHE_SECONDS": "0"}
    ).start()
    try:
        admin = make_token(database_url, "root", "admin")
        trainer = make_token(database_url, "model", "trainer")
        with QueueClient(secured.address, token=admin, retries=0) as root:
            root.create_project("herons", ["grey", "purple"])
            root.add_features("herons", ["h1", "h2"], labels=["grey", "purple"])
        where = tmp_path / "exports"
        where.mkdir()
        ok = run_cli("herons", "--server", secured.address, "--token", admin, "--format", "csv")
        assert ok.returncode == 0, ok.stderr
        assert [r["labels"] for r in read_csv(ok.stdout, False)] == [["grey"], ["purple"]]
        target = where / "herons.csv"
        no = run_cli("herons", "--server", secured.address, "--token", trainer, "-o", str(target))
        assert no.returncode == 1
        lines = no.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "PERMISSION_DENIED" in lines[0], lines
        assert list(where.iterdir()) == []
    finally:
        secured.kill()


def test_the_pieces_without_the_client_functions(
    client: QueueClient, project_name: str, crowd: dict
) -> None:
    """join() and Encoder, fed with the contract's messages from elsewhere (here the RPC's
    replies), give the same bytes as chunks()."""
    project = client.get_project(project_name)
    for fmt in ("csv", "jsonl"):
        encoder = export.Encoder(fmt, project, with_consensus=True)
        annotations = client.export_chunks(project_name, by_item=True)
        consensus = client.export_chunks(project_name, consensus="majority", by_item=True)
        data = b"".join(encoder.encode(export.join(annotations, consensus)))
        assert data == b"".join(export.chunks(client, project_name, fmt)), fmt
        assert encoder.written == 10
