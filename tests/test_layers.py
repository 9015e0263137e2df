"""Imports point down the layers; the thin client imports without any server package.

Layers, bottom to top (ARCHITECTURE.md): the generated contract; the store; the queue
service's handlers and server; the thin client; the trainer (a client of the queue); the
widgets; the app shell (cli, stack, embedded mode), the only code that imports both the
client and the queue service. An import of a higher layer fails this test unless it is one of
the few lazy (in-function) imports listed in LAZY_UP, each with the reason it exists.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "labelgrid_proto": ROOT / "protos" / "python" / "labelgrid_proto",
    "labelgrid_serving": ROOT / "labelgrid_serving",
    "queue_service": ROOT / "queue_service",
    "trainer_service": ROOT / "trainer_service",
    "labelgrid": ROOT / "clients" / "python" / "labelgrid",
}

# (layer, module prefixes); the longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("contract", ("labelgrid_proto",)),
    # what both servers share (auth refusal, TLS, metrics); neither server, nor the client
    ("serving", ("labelgrid_serving",)),
    (
        "store",
        (
            "queue_service.store",
            "queue_service.schema",
            "queue_service.db",
            "queue_service.sqlite_driver",  # the SQLite adapter db.py builds engines with
            "queue_service.errors",
            "queue_service.consensus",
            "queue_service.principal",
            "queue_service.migrations",
        ),
    ),
    ("queue service", ("queue_service",)),
    (
        "thin client",
        ("labelgrid", "labelgrid.client", "labelgrid.aio", "labelgrid.v1", "labelgrid.demo"),
    ),
    ("trainer", ("trainer_service",)),
    ("widgets", ("labelgrid.widgets", "labelgrid.distributed", "labelgrid.connection")),
    ("app shell", ("labelgrid.cli", "labelgrid.stack", "labelgrid.embedded", "labelgrid.sqlview")),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}

# Lazy imports that point up, each needed by a public API that predates the layers.
LAZY_UP = {
    # `SemiSupervisor(connection_string=...)` (superintendent's API) runs the queue service
    # in the notebook's process: embedded mode, loaded only when that argument is given.
    ("labelgrid.connection", "labelgrid.embedded"),
    # `widget.queue.session()`: superintendent's SQLAlchemy access, embedded mode only.
    ("labelgrid.connection", "labelgrid.sqlview"),
    # `labelgrid.SemiSupervisor` etc. resolve through a module __getattr__ so that
    # `import labelgrid` never loads ipywidgets.
    ("labelgrid", "labelgrid.widgets"),
}


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), name)
    return best[1] if best else None


def modules() -> dict[str, Path]:
    found = {}
    for package, path in SOURCES.items():
        for file in path.rglob("*.py"):
            parts = file.relative_to(path).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = file
    return found


def imports(module: str, file: Path) -> list[tuple[str, bool, int]]:
    """(imported module, at module level?, line) for every import of our packages."""
    tree = ast.parse(file.read_text(), str(file))
    top = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks are module level too
        if isinstance(node, ast.If):
            top.update(id(n) for n in ast.walk(node))
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [n if layer_of(n) and n in MODULES else base for n in names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in SOURCES:
                found.append((name, id(node) in top, node.lineno))
    return found


MODULES = modules()


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_imports_point_down() -> None:
    wrong = []
    for module, file in sorted(MODULES.items()):
        here = RANK[layer_of(module)]
        for target, top_level, line in imports(module, file):
            there = RANK[layer_of(target)]
            if there <= here:
                continue
            if not top_level and (module, target) in LAZY_UP:
                continue
            wrong.append(
                f"{file.relative_to(ROOT)}:{line}: {module} imports {target} "
                f"({layer_of(module)} -> {layer_of(target)})"
            )
    assert wrong == [], "imports pointing up the layers:\n" + "\n".join(wrong)


# Crossings allowed by name, each with its reason.
CROSSINGS = {
    # Dawid-Skene lives once: the trainer's crowd acquisition (issue 18) reuses the queue's
    # numpy-only consensus statistics (no database, no server code) instead of a copy.
    ("trainer_service.crowd_acquisition", "queue_service.consensus"),
}


def test_services_and_client_meet_only_in_the_app_shell() -> None:
    """The queue service never imports the client; the client and the widgets never import
    the queue service (the trainer may: it is the queue's client, by gRPC), except for the
    CROSSINGS named above."""
    wrong = []
    for module, file in sorted(MODULES.items()):
        layer = layer_of(module)
        for target, _, line in imports(module, file):
            if (module, target) in CROSSINGS:
                continue
            crosses = (
                layer in ("store", "queue service")
                and target.split(".")[0] in ("labelgrid", "trainer_service")
            ) or (
                layer in ("thin client", "trainer", "widgets")
                and target.split(".")[0] == "queue_service"
            )
            if crosses:
                wrong.append(f"{file.relative_to(ROOT)}:{line}: {module} imports {target}")
    assert wrong == []


SERVER_PACKAGES = [
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "alembic",
    "psycopg",
    "sklearn",
    "scipy",
    "ipywidgets",
    "IPython",
    "matplotlib",
    "queue_service",
    "trainer_service",
    # the web endpoint's runtime (queue_service.web, labelgrid_proto.v1.queue_connect)
    "connectrpc",
    "uvicorn",
    "pyarrow",  # the export extra: imported only when a Parquet file is written
    "labelgrid_serving",
    "prometheus_client",
]


@pytest.mark.parametrize(
    "code",
    [
        "import labelgrid",
        "from labelgrid import QueueClient",
        "import labelgrid.aio, labelgrid.trainer_client, labelgrid.v1",
        "import labelgrid.arrays, labelgrid.payloads, labelgrid.features",
        "import labelgrid.export",
    ],
)
def test_the_client_imports_without_server_packages(code: str) -> None:
    check = (
        f"{code}\nimport sys\n"
        f"print(','.join(sorted(m for m in {SERVER_PACKAGES!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
