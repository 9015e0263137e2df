"""Optional parts of labelgrid and the one-line error that names the install command.

`pip install labelgrid` is the thin client (grpcio, protobuf, numpy). The services, the
trainer and the notebook widgets are extras; code that needs one calls `require()` first,
so a missing extra says what to run instead of failing deep inside an import.
"""

from __future__ import annotations

import importlib.util

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
    """Raise MissingExtra (one line: what needs it, and the command) unless `extra` is
    installed. Each module is found, not imported: `import sklearn` alone costs ~1 s of CPU,
    which `labelgrid queue serve` paid on every start although only the agreement statistics
    use it (they import it when first asked)."""
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError) as exc:
            found, cause = None, exc
        else:
            cause = None
        if found is None:
            raise MissingExtra(
                f"{what} needs labelgrid[{extra}] ({module} is not installed): "
                f"{install_command(extra)}"
            ) from cause
