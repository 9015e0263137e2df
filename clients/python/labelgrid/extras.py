"""Optional parts of labelgrid and the one-line error that names the install command.

`pip install labelgrid` is the thin client (grpcio, protobuf, numpy). The services, the
trainer and the notebook widgets are extras; code that needs one calls `require()` first,
so a missing extra says what to run instead of failing deep inside an import.
"""

from __future__ import annotations

import importlib

#: extra name -> the modules it provides (checked in this order).
EXTRAS: dict[str, tuple[str, ...]] = {
    "queue": ("sqlalchemy", "aiosqlite", "asyncpg", "alembic", "krippendorff", "sklearn"),
    "trainer": ("sklearn",),
    "widgets": ("ipywidgets", "ipyevents", "PIL", "IPython"),
    "page": ("voila",),
    "export": ("pyarrow",),
    "dask": ("dask", "distributed"),
}


class MissingExtra(ImportError):
    """An optional part of labelgrid is not installed; the message names the command."""


def install_command(extra: str) -> str:
    return f"pip install 'labelgrid[{extra}]' (from a checkout: pip install '.[{extra}]')"


def require(extra: str, what: str) -> None:
    """Raise MissingExtra (one line: what needs it, and the command) unless `extra` imports."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtra(
                f"{what} needs labelgrid[{extra}] ({module} is not installed): "
                f"{install_command(extra)}"
            ) from exc
