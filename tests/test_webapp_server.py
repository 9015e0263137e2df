"""The queue service's HTTP side without a browser: Connect (JSON and binary, errors, auth,
server streaming fed by gRPC changes), the static page, refusal rules, graceful shutdown,
`labelgrid stack`, and that the committed TypeScript and built page are fresh."""

from __future__ import annotations

import filecmp
import gzip
import http.client
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from labelgrid import QueueClient
from labelgrid_proto.v1 import queue_pb2
from queue_service.web.connect import FitGzip
from tests.conftest import IN_CI
from tests.support.ports import free_port
from tests.support.servers import ServiceProcess, secured_web
from tests.test_security import make_token

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "clients" / "web"
BIN = WEB / "node_modules" / ".bin"
STATIC = ROOT / "queue_service" / "web" / "static"
SERVICE = "/labelgrid.v1.QueueService/"


def connect(base: str, method: str, body: dict, token: str = "") -> tuple[int, dict]:
    """A unary Connect call with a JSON body; (HTTP status, decoded JSON reply)."""
    headers = {"content-type": "application/json", "connect-protocol-version": "1"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        base + SERVICE + method, data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture
def web(database_url: str):
    proc = ServiceProcess(database_url, None, "--web-address", "127.0.0.1:0").start()
    yield proc
    proc.kill()


def test_connect_json_and_binary_over_the_same_handlers(web: ServiceProcess) -> None:
    with QueueClient(web.address) as client:
        client.create_project("c", ["a", "b"], instructions="*hi*")
        client.add_features("c", ["one", "two", "three"])
    base = web.web_url
    status, reply = connect(base, "GetProject", {"project": "c"})
    assert status == 200 and reply["project"]["instructions"] == "*hi*"
    status, popped = connect(base, "Pop", {"project": "c", "workerId": "w", "n": 2})
    assert status == 200
    assert [i["input"]["text"] for i in popped["items"]] == ["one", "two"]
    # binary protobuf, as the web app sends it
    request = urllib.request.Request(
        base + SERVICE + "ListLeases",
        data=queue_pb2.ListLeasesRequest(project="c", worker_id="w").SerializeToString(),
        headers={"content-type": "application/proto", "accept-encoding": "gzip, deflate"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:  # gzipped, as for a browser
        assert r.headers["content-type"] == "application/proto"
        assert r.headers["content-encoding"] == "gzip"
        leases = queue_pb2.ListLeasesResponse.FromString(gzip.decompress(r.read()))
    assert [i.lease_token for i in leases.items] == [i["leaseToken"] for i in popped["items"]]
    assert leases.worker_id == "w"
    first = popped["items"][0]
    status, submitted = connect(
        base,
        "Submit",
        {"project": "c", "itemId": first["id"], "leaseToken": first["leaseToken"],
         "workerId": "w", "labels": ["b"], "popNext": True},
    )  # fmt: skip
    assert status == 200 and submitted["next"]["input"]["text"] == "three"
    with QueueClient(web.address) as client:  # the same database, seen over gRPC
        assert [(r.item_id, list(r.labels)) for r in client.export_labels("c")] == [
            (int(first["id"]), ["b"])
        ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_idle_connection_stays_open_between_labels(web: ServiceProcess) -> None:
    """A page labels every few seconds on the same connection; uvicorn's default closed it
    after 5 idle seconds, sometimes just as the page's next request went out (failed
    requests in the crowd benchmark, bench/results/crowd_keepalive_ab.json)."""
    host, port = web.web_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/")
            reply = conn.getresponse()
            assert reply.status == 200 and reply.read()
            sock = conn.sock
            time.sleep(6)  # longer than uvicorn's default keep-alive
        assert conn.sock is sock  # the same connection served the second request
    finally:
        conn.close()


@pytest.mark.parametrize("size", [0, 1, 300, 511, 512, 513, 5000, 2**15 - 1, 2**15, 10**6])
def test_replies_are_gzipped_with_a_window_fitted_to_them(size: int) -> None:
    # a random half, then the same again: only a window reaching back half the size finds it
    half = random.Random(size).randbytes(size // 2)
    data = (half + half + b"x")[:size]
    packed = FitGzip().compress(data)
    assert gzip.decompress(packed) == data  # any gzip reader reads it
    assert FitGzip().decompress(packed, size) == data
    if size >= 300:  # as small as with zlib's default window: the repeat was found
        assert len(packed) <= len(gzip.compress(data, 6)) * 1.05 + 8
        if size <= 2**15:  # (beyond that zlib's own window does not reach either)
            assert len(packed) <= size // 2 * 1.03 + 40


@pytest.mark.parametrize(
    ("method", "body", "status", "code", "words"),
    [
        ("Pop", {"project": "nope", "workerId": "w"}, 404, "not_found", "'nope' does not exist"),
        ("Pop", {"project": "c", "workerId": "w", "n": -1}, 400, "invalid_argument", "n must"),
        ("Pop", {"project": "c", "workerId": ""}, 400, "invalid_argument", "worker_id is empty"),
        ("Undo", {"project": "c", "workerId": "w"}, 400, "failed_precondition", "no annotation"),
        (
            "Submit",
            {"project": "c", "itemId": "1", "leaseToken": "x", "workerId": "w", "labels": ["z"]},
            400,
            "invalid_argument",
            "not an option",
        ),
        (
            "CreateProject",
            {"project": {"name": "c", "options": ["a"]}},
            409,
            "already_exists",
            "already exists",
        ),
    ],
)
def test_errors_keep_their_code_and_message(
    web: ServiceProcess, method: str, body: dict, status: int, code: str, words: str
) -> None:
    with QueueClient(web.address) as client:
        client.create_project("c", ["a", "b"])
        client.add_features("c", ["one"])
    got_status, reply = connect(web.web_url, method, body)
    assert (got_status, reply["code"]) == (status, code), reply
    assert words in reply["message"]


def test_the_page_and_its_headers(web: ServiceProcess) -> None:
    with urllib.request.urlopen(web.web_url + "/", timeout=10) as page:
        html = page.read().decode()
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = [a.lstrip("./") for a in re.findall(r'"(\./assets/[^"]+)"', html)]
    assert {Path(a).suffix for a in assets} == {".js", ".css"}
    for asset in assets:
        with urllib.request.urlopen(f"{web.web_url}/{asset}", timeout=10) as r:
            assert r.read() == (STATIC / asset).read_bytes()
            assert "immutable" in r.headers["cache-control"]
            assert r.headers["content-encoding"] is None
        packed = urllib.request.Request(
            f"{web.web_url}/{asset}", headers={"accept-encoding": "gzip, deflate"}
        )
        with urllib.request.urlopen(packed, timeout=10) as r:
            assert r.headers["content-encoding"] == "gzip"
            body = r.read()
            assert gzip.decompress(body) == (STATIC / asset).read_bytes()
            assert len(body) < len((STATIC / asset).read_bytes()) / 2
    for path, code in (("/nothing-here", 404), ("/../pyproject.toml", 404)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(web.web_url + path, timeout=10)
        assert err.value.code == code
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(web.web_url + "/", data=b"x"), timeout=10)
    assert err.value.code == 405


def _envelopes(response: http.client.HTTPResponse):
    """Connect streaming envelopes: (flags, JSON) one by one."""
    while True:
        head = response.read(5)
        if len(head) < 5:
            return
        flags, size = struct.unpack(">BI", head)
        yield flags, json.loads(response.read(size))


def test_watch_progress_streams_grpc_changes_and_shutdown_ends_it(web: ServiceProcess) -> None:
    """A browser's WatchProgress sees labels given over gRPC (one notifier), and SIGTERM ends
    the stream cleanly and the process exits 0."""
    with QueueClient(web.address) as client:
        client.create_project("s", ["a"])
        client.add_features("s", ["x", "y"])
    conn = http.client.HTTPConnection("127.0.0.1", web.web_port, timeout=20)
    body = json.dumps({"project": "s"}).encode()
    conn.request(
        "POST",
        SERVICE + "WatchProgress",
        body=struct.pack(">BI", 0, len(body)) + body,
        headers={"content-type": "application/connect+json", "connect-protocol-version": "1"},
    )
    response = conn.getresponse()
    assert response.status == 200
    stream = _envelopes(response)
    flags, first = next(stream)
    assert flags == 0 and first["progress"]["total"] == "2" and "labelled" not in first["progress"]
    with QueueClient(web.address) as client:
        [item] = client.pop("s", "grpc-user")
        client.submit("s", item, "a", "grpc-user")
    for flags, message in stream:  # the lease, then the label (or both at once)
        assert flags == 0
        if message["progress"].get("labelled") == "1":
            break
    assert message["progress"]["workers"] == [{"workerId": "grpc-user", "labelled": "1"}]
    started = time.monotonic()
    web.proc.send_signal(signal.SIGTERM)
    rest = list(stream)
    assert rest and rest[-1][0] == 2 and rest[-1][1] == {}  # end of stream, no error
    assert web.proc.wait(15) == 0
    assert time.monotonic() - started < 10


def test_auth_over_connect(database_url: str) -> None:
    service = secured_web(database_url)
    try:
        admin = make_token(database_url, "root", "admin")
        uma = make_token(database_url, "uma", "labeller", "t")
        base = service.web_url
        status, reply = connect(base, "ListProjects", {})
        assert (status, reply["code"]) == (401, "unauthenticated")
        assert "Bearer" in reply["message"]
        assert connect(base, "CreateProject", {"project": {"name": "t"}}, admin)[0] == 200
        status, reply = connect(base, "CreateProject", {"project": {"name": "u"}}, uma)
        assert (status, reply["code"]) == (403, "permission_denied")
        status, reply = connect(base, "ListLeases", {"project": "t"}, uma)
        assert status == 200 and reply["workerId"] == "uma"
        # the page is public: it holds no data, every call it makes needs the token
        with urllib.request.urlopen(base + "/", timeout=10) as page:
            assert page.status == 200
    finally:
        service.kill()


def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labelgrid.cli", "queue", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_a_public_web_address_needs_auth(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    out = _serve("--address", "127.0.0.1:0", "--web-address", "0.0.0.0:0", "--database-url", url)
    assert out.returncode == 2
    assert "refusing to serve on 0.0.0.0:0 without authentication" in out.stderr
    out = _serve(
        "--address", "127.0.0.1:0", "--database-url", url, env={"LABELGRID_WEB_ADDRESS": "[::]:0"}
    )
    assert out.returncode == 2 and "refusing to serve on [::]:0" in out.stderr
    # with --insecure-no-auth it starts (and warns); a taken port fails the start clearly
    taken = free_port()
    holder = ServiceProcess(url, None, "--web-address", f"127.0.0.1:{taken}").start()
    try:
        out = _serve(
            "--address", "127.0.0.1:0", "--web-address", f"127.0.0.1:{taken}",
            "--database-url", url,
        )  # fmt: skip
        assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{taken} (--web" in out.stderr
    finally:
        holder.kill()
    proc = ServiceProcess(
        url, None, "--web-address", "0.0.0.0:0", "--insecure-no-auth", "--address", "127.0.0.1:0"
    ).start()
    try:
        assert "serving without authentication" in proc.logs() and proc.web_port
    finally:
        proc.kill()


def test_make_run_serves_the_web_app_without_voila(tmp_path: Path) -> None:
    """`labelgrid stack` (make run): the queue service serves the page; no Voila kernel."""
    import psutil

    queue, trainer, page = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "labelgrid.cli", "stack",
            "--database-url", f"sqlite:///{tmp_path / 'stack.db'}",
            "--queue-address", f"127.0.0.1:{queue}",
            "--trainer-address", f"127.0.0.1:{trainer}",
            "--page-port", str(page),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "labelling web app: " in line or proc.poll() is not None:
                break
        assert f"labelling web app: http://127.0.0.1:{page}/?project=digits" in "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{page}/", timeout=10) as r:
            assert b"labelgrid" in r.read()
        status, reply = connect(f"http://127.0.0.1:{page}", "GetProject", {"project": "digits"})
        assert status == 200 and "Which digit is this?" in reply["project"]["instructions"]
        children = psutil.Process(proc.pid).children(recursive=True)
        assert not [c for c in children if "voila" in " ".join(c.cmdline())]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def _need(tool: Path) -> str:
    if not tool.exists():
        reason = f"{tool.name} missing: run `make web-deps` (clients/web npm packages)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return str(tool)


def _same_tree(a: Path, b: Path) -> list[str]:
    left = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    right = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    differ = sorted(left ^ right)
    differ += [f for f in sorted(left & right) if not filecmp.cmp(a / f, b / f, shallow=False)]
    return differ


def test_generated_typescript_is_fresh(tmp_path: Path) -> None:
    """clients/web/src/gen is what buf + protoc-gen-es make from protos/ today."""
    buf = _need(BIN / "buf")
    _need(BIN / "protoc-gen-es")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        [buf, "generate", "--template", "buf.gen.yaml", "-o", str(tmp_path)],
        cwd=WEB,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    stale = _same_tree(tmp_path / "src" / "gen", WEB / "src" / "gen")
    assert stale == [], f"stale generated TypeScript {stale}: run `make web`"


def test_built_page_is_fresh(tmp_path: Path) -> None:
    """queue_service/web/static is what vite builds from clients/web today."""
    vite = _need(BIN / "vite")
    shutil.copytree(WEB, tmp_path / "web", ignore=shutil.ignore_patterns("node_modules"))
    (tmp_path / "web" / "node_modules").symlink_to(WEB / "node_modules")
    out = subprocess.run(
        [vite, "build", "--outDir", str(tmp_path / "static"), "--emptyOutDir"],
        cwd=tmp_path / "web",
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    stale = _same_tree(tmp_path / "static", STATIC)
    assert stale == [], f"stale built page {stale}: run `make web`"


def test_only_connect_content_types_are_accepted(web: ServiceProcess) -> None:
    """A cross-site form or text/plain post (no CORS preflight) is refused before any handler
    runs: only Connect's JSON and protobuf types are served."""
    with QueueClient(web.address) as client:
        client.create_project("x", ["a"])
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        request = urllib.request.Request(
            web.web_url + SERVICE + "CreateProject",
            data=json.dumps({"project": {"name": "y"}}).encode(),
            headers={"content-type": kind},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 415, kind
    with QueueClient(web.address) as client:
        assert [p.name for p in client.list_projects()] == ["x"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_web_address_serves_https_with_the_service_certificate(
    database_url: str, tmp_path: Path
) -> None:
    import ssl

    from tests.support import certs

    paths = certs.make(tmp_path)
    tls = {"LABELGRID_TLS_CERT": paths["server.crt"], "LABELGRID_TLS_KEY": paths["server.key"]}
    proc = ServiceProcess(database_url, tls, "--web-address", "127.0.0.1:0").start()
    try:
        context = ssl.create_default_context(cafile=paths["ca.crt"])
        url = f"https://127.0.0.1:{proc.web_port}/"
        with urllib.request.urlopen(url, context=context, timeout=10) as page:
            assert b"labelgrid" in page.read()
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: no
            urllib.request.urlopen(f"http://127.0.0.1:{proc.web_port}/", timeout=5)
    finally:
        proc.kill()
