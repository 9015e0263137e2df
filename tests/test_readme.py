"""The README runs as written (issue 15): every fenced block of README.md, and of
protos/README.md (where the README sends readers for the RPC examples), is executed.

Why a small parser of our own and not pytest-markdown-docs or pytest-codeblocks: the first runs
only Python fences, the second Python and sh, both with `exec` inside the pytest process;
neither runs Node, and neither has a block that starts a server to be checked and stopped, or a
block that needs our stack or a throwaway PostgreSQL. What we need is about forty lines: fences
at any indentation (blocks inside list items) and an optional marker comment just before one.

How each block runs (cwd: a scratch directory that mirrors the checkout through symlinks, so
`make run` and `node clients/node/...` work as in the repository while the files the snippets
write stay out of it; PATH starts with this venv's bin, so `labelgrid` is this checkout's):

- default: against the `make run` stack (started once, by `make run` itself in another scratch
  mirror, on the README's own addresses), **twice**, because a reader may run a snippet twice;
  Python in a fresh interpreter, sh with `bash -e`, js with node;
- `<!-- readme-test: postgres -->`: once, with libpq's PG* variables pointing at a throwaway
  PostgreSQL (and its client binaries on PATH) instead;
- `<!-- readme-test: serves HOST:PORT ... -->`: a server that runs until stopped: started,
  health-checked on each address, stopped with SIGTERM, and its output must hold no traceback;
- `<!-- readme-test: continues -->`: Python run after the Python block before it, in one process;
- `<!-- readme-test: once: REASON -->`: run once only, for what cannot be repeated as written;
- `<!-- readme-test: skip: REASON -->`: only for what cannot run here (the reason is shown);
- yaml is parsed; a fence without a language (a layout tree) must name paths that exist.

Blocks may rely on the blocks before them in their file (as a reader following the page does):
running one block's test alone runs those first. After the run the demo project must be as the
stack left it: the same labels, leases and trainer job.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from labelgrid import QueueClient
from labelgrid.trainer_client import TrainerClient
from tests.conftest import IN_CI
from tests.support import postgres

# Under pytest-xdist (`make test`) this module runs whole on one worker, in file order
# (tests/conftest.py, ONE_WORKER): the blocks rely on the ones before them and share one
# module-scoped stack on the README's fixed ports.
REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "protos/README.md")
BIN = Path(sys.executable).parent  # the venv's bin: `labelgrid` is this checkout's
QUEUE, TRAINER, WEB = "127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:8866"
STACK_ADDRESSES = (QUEUE, TRAINER, WEB)
DEMO = "digits"
NODE_MODULES = REPO / "clients" / "node" / "node_modules" / "@grpc" / "grpc-js"
LOCK = Path(tempfile.gettempdir()) / "labelgrid-readme-stack.lock"
RUN_TIMEOUT = 300.0
START_TIMEOUT = 180.0
KINDS = {
    "sh": "bash",
    "bash": "bash",
    "shell": "bash",
    "python": "python",
    "py": "python",
    "js": "node",
    "javascript": "node",
    "yaml": "yaml",
    "": "text",
}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[ \t]*$")


# -- the parser ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None = None
    postgres: bool = False
    serves: tuple[str, ...] = ()
    continues: bool = False
    once: str | None = None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def kind(self) -> str:
        return KINDS[self.lang]

    @property
    def needs_node(self) -> bool:
        return self.kind == "node" or re.search(r"(^|[;&|]\s*)node\s", self.code, re.M) is not None

    @property
    def runs(self) -> bool:
        return self.kind in ("bash", "python", "node") and self.skip is None


def _marker(lines: list[str], fence: int) -> str | None:
    """The text of a `<!-- readme-test: ... -->` comment ending on the line before `fence`."""
    end = fence - 1
    if end < 0 or not lines[end].strip().endswith("-->"):
        return None
    start = end
    while start > 0 and "<!--" not in lines[start]:
        start -= 1
    text = " ".join(line.strip() for line in lines[start : end + 1])
    found = re.fullmatch(r"<!--\s*readme-test:\s*(.*?)\s*-->", text)
    return found[1] if found else None


def _settings(marker: str | None, where: str) -> dict[str, Any]:
    if marker is None:
        return {}
    for word in ("skip", "once"):  # these take the rest of the comment as their reason
        if marker.startswith(f"{word}:"):
            return {word: marker.removeprefix(f"{word}:").strip()}
    settings: dict[str, Any] = {}
    for part in marker.split(";"):
        word, *args = part.split()
        if word == "postgres" and not args:
            settings["postgres"] = True
        elif word == "continues" and not args:
            settings["continues"] = True
        elif word == "serves" and args:
            settings["serves"] = tuple(args)
        else:
            raise ValueError(f"{where}: unknown readme-test marker {part.strip()!r}")
    return settings


def parse(doc: str, text: str) -> list[Block]:
    """Every fenced block of a markdown text, with the marker before it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        end = next(
            (
                j
                for j in range(i + 1, len(lines))
                if lines[j].strip().startswith(fence) and set(lines[j].strip()) == {fence[0]}
            ),
            None,
        )
        if end is None:
            raise ValueError(f"{doc}:{i + 1}: a fence that is never closed")
        body = [line[indent:] if line[:indent].isspace() else line for line in lines[i + 1 : end]]
        where = f"{doc}:{i + 1}"
        lang = opening["lang"].lower()
        if lang not in KINDS:
            raise ValueError(f"{where}: no runner for a {lang!r} block: add one, or mark it")
        settings = _settings(_marker(lines, i), where)
        blocks.append(Block(doc, i + 1, lang, "\n".join(body) + "\n", **settings))
        i = end + 1
    return blocks


BLOCKS = [b for doc in DOCS for b in parse(doc, (REPO / doc).read_text())]


# -- processes -------------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    output: str
    cwd: Path


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A reader's shell: none of our LABELGRID_*/PG*/make settings leak in; the venv first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LABELGRID_", "PG", "MAKE")) and k != "MFLAGS"
    }
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env.update(extra or {})
    return env


def mirror(into: Path) -> Path:
    """A directory that looks like the checkout (a symlink per tracked top-level entry, and
    .venv), so snippets run as in the repository but write their files elsewhere."""
    into.mkdir(parents=True, exist_ok=True)
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=False
    )
    names = (
        {p.split("/", 1)[0] for p in tracked.stdout.split()} if tracked.returncode == 0 else set()
    )
    if not names:  # not a git checkout: everything but databases
        names = {p.name for p in REPO.iterdir() if p.name != ".git" and ".db" not in p.name}
    for name in sorted(names | {".venv"}):
        if (REPO / name).exists() and not (into / name).exists():
            (into / name).symlink_to(REPO / name)
    return into


def run_code(kind: str, code: str, cwd: Path, env: dict[str, str], name: str) -> Result:
    """Run one snippet to completion: Python in a fresh interpreter, sh with `bash -e`, node."""
    suffix = {"python": ".py", "bash": ".sh", "node": ".js"}[kind]
    path = cwd / f"{name}{suffix}"
    path.write_text(code)
    command = {"python": [sys.executable], "bash": ["bash", "-e"], "node": ["node"]}[kind]
    try:
        done = subprocess.run(
            [*command, path.name],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{name} ran for over {RUN_TIMEOUT:.0f} s:\n{exc.output}") from exc
    return Result(done.returncode, done.stdout, cwd)


def listening(address: str) -> bool:
    host, port = address.replace("0.0.0.0", "127.0.0.1").rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, int(port))) == 0


def bindable(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def require_free(addresses: tuple[str, ...], what: str, patience: float = 30) -> None:
    """Fail clearly rather than run a snippet against somebody else's server: gRPC binds with
    SO_REUSEPORT, so a second server on a taken port would start and share it silently.
    50051 and 50052 lie in Linux's ephemeral range, so an outgoing connection elsewhere on the
    machine can hold one for a moment: that is waited out, a listener is not."""
    deadline = time.monotonic() + patience
    while True:
        served = [a for a in addresses if listening(a)]
        taken = served or [a for a in addresses if not bindable(a)]
        if not taken:
            return
        if served or time.monotonic() > deadline:
            raise AssertionError(
                f"{', '.join(taken)} already in use (a `make run`, or another test?): {what} "
                "needs the README's own addresses, since the snippets name them; stop it and "
                "run again"
            )
        time.sleep(0.5)


def healthy(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"{what}: exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready in {START_TIMEOUT:.0f} s:\n{log.read_text()}")
        time.sleep(0.3)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM the whole process group (make or bash, and the servers they started), wait
    until every member has gone, SIGKILL what is left after `timeout`; the leader's status."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait(timeout)
    deadline = time.monotonic() + timeout
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        if group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    return code


# -- the stack -------------------------------------------------------------------------------


def demo_state() -> dict[str, object]:
    """What the snippets must not change: the demo's labels, leases and its trainer job."""
    with QueueClient(QUEUE, retries=2) as q:
        progress = q.progress(DEMO)
        labels = sorted(
            (e.annotation_id, e.item_id, e.worker_id, tuple(e.labels))
            for e in q.export_labels(DEMO)
        )
    with TrainerClient(TRAINER) as tc:
        job = tc.status(DEMO)
    return {
        "items": progress.total,
        "labelled": progress.labelled,
        "leased": progress.leased,
        "labels": labels,
        "job": (job.state, str(job.spec)),
    }


class Stack:
    """`make run`, exactly, in a scratch mirror of the checkout (its labelgrid.db is thrown
    away), on the README's addresses; started when a block needs it, stopped for a block that
    serves on its ports, and checked for changes to the demo whenever it stops."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / "make-run.log"
        self.proc: subprocess.Popen | None = None
        self.baseline: dict[str, object] | None = None
        self.changes: list[str] = []
        self.started = 0

    def up(self) -> None:
        if self.proc is not None:
            return
        require_free(STACK_ADDRESSES, "the `make run` stack")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["make", "run"],
                cwd=self.workdir,
                env=base_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started += 1

        def ready() -> bool:
            if not (healthy(QUEUE) and healthy(TRAINER)):
                return False
            with TrainerClient(TRAINER) as tc:  # the demo job is the stack's last step
                return any(job.spec.project == DEMO for job in tc.list_jobs())

        wait_until(ready, self.proc, self.log, "make run")
        with urllib.request.urlopen(f"http://{WEB}/?project={DEMO}", timeout=10) as page:
            assert page.status == 200
        self.baseline = demo_state()

    def check(self) -> None:
        if self.proc is not None and self.baseline is not None:
            now = demo_state()
            if now != self.baseline:
                self.changes.append(f"before: {self.baseline}\nafter: {now}")

    def down(self) -> None:
        if self.proc is None:
            return
        try:
            self.check()
        finally:
            stop_group(self.proc)
            self.proc = None


# -- the runner ------------------------------------------------------------------------------


class Runner:
    """Runs each block once per module (memoised), after the blocks it may rely on."""

    def __init__(self, scratch: Path, stack: Stack) -> None:
        self.scratch = scratch
        self.stack = stack
        self.pg: postgres.Postgres | None = None
        self.results: dict[str, list[Result] | Exception] = {}

    def result(self, block: Block) -> list[Result]:
        if block.id not in self.results:
            try:
                for earlier in self.prerequisites(block):
                    if isinstance(self.results.get(earlier.id), Exception):
                        raise AssertionError(f"{block.id} follows {earlier.id}, which failed")
                    self.result(earlier)
                self.results[block.id] = self.execute(block)
            except Exception as exc:
                self.results[block.id] = exc
        found = self.results[block.id]
        if isinstance(found, Exception):
            raise found
        return found

    @staticmethod
    def prerequisites(block: Block) -> list[Block]:
        return [
            b
            for b in BLOCKS
            if b.doc == block.doc
            and b.line < block.line
            and b.runs
            and b.postgres == block.postgres
        ]

    def env(self, block: Block) -> dict[str, str]:
        if not block.postgres:
            return base_env()
        assert self.pg is not None, "a postgres block runs with the pg fixture"
        path = os.pathsep.join([str(postgres.PG_BIN), str(BIN), os.environ.get("PATH", "")])
        return base_env(
            {"PGHOST": "127.0.0.1", "PGPORT": str(self.pg.port), "PGUSER": "postgres", "PATH": path}
        )

    def execute(self, block: Block) -> list[Result]:
        name = re.sub(r"\W", "_", block.id)
        if block.serves:
            return [self.serve(block, name)]
        if not block.postgres:
            self.stack.up()
        code = self.source(block)
        results = []
        for attempt in range(1 if block.postgres or block.once else 2):
            result = run_code(block.kind, code, self.scratch, self.env(block), f"{name}_{attempt}")
            assert result.returncode == 0, (
                f"{block.id} (run {attempt + 1}) exited {result.returncode}:\n{result.output}"
            )
            results.append(result)
        return results

    def source(self, block: Block) -> str:
        if not block.continues:
            return block.code
        before = [b for b in BLOCKS if b.doc == block.doc and b.line < block.line]
        previous = [b for b in before if b.kind == block.kind]
        assert previous, f"{block.id} continues, but no {block.kind} block comes before it"
        return self.source(previous[-1]) + "\n" + block.code

    def serve(self, block: Block, name: str) -> Result:
        on_stack_ports = {a.rsplit(":", 1)[1] for a in block.serves} & {
            a.rsplit(":", 1)[1] for a in STACK_ADDRESSES
        }
        if on_stack_ports:
            assert block.postgres, f"{block.id} serves on the stack's ports but needs the stack"
            self.stack.down()
            require_free(STACK_ADDRESSES, block.id)
        elif not block.postgres:
            self.stack.up()
        require_free(block.serves, block.id)
        log = self.scratch / f"{name}.log"
        (self.scratch / f"{name}.sh").write_text(block.code)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["bash", "-e", f"{name}.sh"],
                cwd=self.scratch,
                env=self.env(block),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            for address in block.serves:
                local = address.replace("0.0.0.0", "127.0.0.1")
                wait_until(lambda a=local: healthy(a), proc, log, f"{block.id} on {address}")
        finally:
            code = stop_group(proc)
        output = log.read_text()
        assert code in (0, -signal.SIGTERM), f"{block.id} exited {code} on SIGTERM:\n{output}"
        assert "Traceback" not in output, f"{block.id} logged a traceback:\n{output}"
        return Result(code, output, self.scratch)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    """One stack for the module. A file lock serialises runs on one machine (the README's
    ports fit one stack): a second run waits for the first."""
    with open(LOCK, "a") as lock:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another run of tests/test_readme.py held {LOCK} for 10 minutes")
                time.sleep(1)
        root = tmp_path_factory.mktemp("readme")
        stack = Stack(mirror(root / "stack"))
        # `make run` in a mirror would reinstall a stale venv from the mirror's paths
        stale = subprocess.run(["make", "-q", ".venv/.installed"], cwd=stack.workdir, check=False)
        if stale.returncode != 0:
            pytest.fail("the venv (.venv) is missing or older than pyproject.toml: `make venv`")
        try:
            yield Runner(mirror(root / "scratch"), stack)
        finally:
            stack.down()


# -- what some blocks must print -------------------------------------------------------------


def _every_run(*patterns: str) -> Callable[[list[Result]], None]:
    def check(results: list[Result]) -> None:
        for r in results:
            for pattern in patterns:
                assert re.search(pattern, r.output, re.M), f"no {pattern!r} in:\n{r.output}"

    return check


def _node_labels_ten(results: list[Result]) -> None:
    import json

    for r in results:
        printed = json.loads(r.output.strip().splitlines()[-1])
        assert len(printed["labelled"]) == 10, printed
        assert printed["progress"]["total"] == 20, printed


def _trained(results: list[Result]) -> None:
    for r in results:
        status, score = r.output.split()[-2:]
        assert status == "ok" and float(score) > 0.8, r.output


def _exports_written(results: list[Result]) -> None:
    import csv

    import pyarrow.parquet as pq

    cwd = results[-1].cwd
    rows = list(csv.DictReader((cwd / "birds.csv").open()))
    assert len(rows) == 6 and {r["worker_id"] for r in rows} == {"ann", "bob", "cy"}, rows
    assert pq.read_table(cwd / "birds.parquet").num_rows == 6
    assert "consensus" in next(csv.DictReader((cwd / "birds-ds.csv").open()))
    assert results[-1].output.count('"worker_id"') == 6  # the JSON lines to stdout


EXPECT: dict[str, Callable[[list[Result]], None]] = {
    # the progress printed; `key=` makes the second run add nothing (it would be refused)
    'print(q.progress("readme-example"))': _every_run(r"^total: 500$"),
    # the widget's add_features is once-only: still 500 items after the second run
    "widget.add_features(digits[:500, :])": _every_run(r"^500$"),
    "print(run.status, run.score)": _trained,
    "node clients/node/cli.js": _node_labels_ten,
    'print(q.progress("readme-birds").in_review)': _every_run(r"^2$"),
    "labelgrid export readme-birds --server": _exports_written,
    "labelgrid token create --name root": _every_run(r"revoked 'alice'"),
    "print([t.name for t in q.list_tokens()])": _every_run(r"'alice'"),
    "QueueService/GetProgress": _every_run(r'"name": ?"digits"', r'"total": ?"1797"'),
}


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.id}-{b.lang or 'text'}" for b in BLOCKS])
def test_block(block: Block, runner: Runner, request: pytest.FixtureRequest) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.id}: {block.skip}")
    if block.kind == "yaml":
        assert yaml.safe_load(block.code), f"{block.id}: empty YAML"
        return
    if block.kind == "text":
        paths = [
            line.split()[0].rstrip(",") for line in block.code.splitlines() if line[:1].strip()
        ]
        named = [p for p in paths if "/" in p]
        assert named, f"{block.id}: a text block that names no paths; give it a language"
        missing = [p for p in named if not list(REPO.glob(p.rstrip("/")))]
        assert not missing, f"{block.id} names paths that do not exist: {missing}"
        return
    if block.needs_node and not (shutil.which("node") and NODE_MODULES.exists()):
        reason = f"{block.id} needs node and {NODE_MODULES} (`make node-deps`)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    if block.postgres and runner.pg is None:
        runner.pg = request.getfixturevalue("pg")
        import psycopg

        with psycopg.connect(runner.pg.dsn("postgres"), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS labelgrid WITH (FORCE)")
    results = runner.result(block)
    for fragment, check in EXPECT.items():
        if fragment in block.code:
            check(results)


def test_expectations_name_one_block_each() -> None:
    for fragment in EXPECT:
        found = [b.id for b in BLOCKS if fragment in b.code]
        assert len(found) == 1, f"EXPECT key {fragment!r} matches {found}"


def test_skips_are_few_and_give_reasons() -> None:
    skipped = [b for b in BLOCKS if b.skip is not None]
    assert all(len(b.skip or "") > 20 for b in skipped), skipped
    assert len(skipped) <= 3, [b.id for b in skipped]


def test_the_demo_is_untouched(runner: Runner) -> None:
    """Last: the snippets added no label to the demo, leased nothing, replaced no job."""
    if runner.stack.started == 0:
        pytest.skip("no block ran against the stack")
    runner.stack.up()
    runner.stack.check()
    assert not runner.stack.changes, "\n".join(runner.stack.changes)


# -- the harness itself can fail -------------------------------------------------------------


def test_the_parser_reads_markers_and_indented_fences() -> None:
    text = (
        "- item\n\n  <!-- readme-test: postgres;\n  serves 127.0.0.1:1 -->\n  ```sh\n"
        "  echo hi\n  ```\n\n<!-- readme-test: skip: no engine -->\n````python\nx = 1\n````\n"
    )
    first, second = parse("x.md", text)
    assert (first.lang, first.code, first.postgres, first.serves) == (
        "sh",
        "echo hi\n",
        True,
        ("127.0.0.1:1",),
    )
    assert (second.lang, second.skip, second.code) == ("python", "no engine", "x = 1\n")
    with pytest.raises(ValueError, match="never closed"):
        parse("x.md", "```sh\necho\n")
    with pytest.raises(ValueError, match="unknown readme-test marker"):
        parse("x.md", "<!-- readme-test: sometimes -->\n```sh\necho\n```\n")


@pytest.mark.parametrize(
    ("kind", "code"),
    [("python", "raise SystemExit(3)\n"), ("bash", "false\ntrue\n"), ("node", "process.exit(4)\n")],
)
def test_a_failing_snippet_fails(kind: str, code: str, tmp_path: Path) -> None:
    if kind == "node" and not shutil.which("node"):
        pytest.skip("no node here")
    assert run_code(kind, code, tmp_path, base_env(), "fails").returncode != 0
