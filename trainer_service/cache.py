"""The trainer's feature cache: a project's array features on local disk, by item id.

Features never change once added, so a run only has to fetch the items added since the
last one (StreamUnlabelled from a cursor) and the ids still in the pool (ids only); every
feature it has seen before is read from here, memory-mapped. A restarted trainer finds its
cache where it left it.

One directory per project (its name, plus a digest of the queue's address and the project's
creation time, so a project deleted and made again under the same name never reads the old
one's features), holding:

- `ids.i8`: the item ids, int64, in the order they were appended;
- `rows.bin`: their features, one fixed-size row each (the project's dtype and shape);
- `meta.json`: dtype, shape, how many rows are complete, and the cursor (the highest item id
  the stream of new items has passed). It is written last, atomically, so rows appended by a
  run that died half-way are ignored and overwritten by the next;
- `lock`: held (flock) by the one learner using the directory: a second trainer pointed at
  the same directory reads the project uncached rather than interleave appends.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class Uncacheable(Exception):
    """The project's inputs are not arrays of one dtype and shape (text, URIs, JSON, or
    arrays of several shapes): the loop reads them the uncached way."""


class CacheBusy(Uncacheable):
    """Another learner holds the cache's directory: this run reads uncached, a later one
    tries the directory again."""


def default_dir() -> Path:
    """$XDG_CACHE_HOME/labelgrid/features (~/.cache/labelgrid/features)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "labelgrid" / "features"


def project_key(queue: str, project: str, created_at_ns: int) -> str:
    """A directory name for one project of one queue: readable, and unique per project."""
    digest = hashlib.sha256(f"{queue}\0{project}\0{created_at_ns}".encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", project)[:80]
    return f"{safe}-{digest}"


@dataclass
class _Meta:
    dtype: str = ""
    shape: tuple[int, ...] = ()
    count: int = 0
    cursor: int = 0


class FeatureCache:
    """Append-only features of one project, memory-mapped for reading."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / "lock", "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise CacheBusy(f"another trainer is using the feature cache {self.dir}") from None
        self._ids_path = self.dir / "ids.i8"
        self._rows_path = self.dir / "rows.bin"
        self._meta_path = self.dir / "meta.json"
        self.meta = self._load()
        self._index: tuple[np.ndarray, np.ndarray] | None = None

    def _load(self) -> _Meta:
        try:
            raw = json.loads(self._meta_path.read_text())
            meta = _Meta(raw["dtype"], tuple(raw["shape"]), int(raw["count"]), int(raw["cursor"]))
        except (OSError, ValueError, KeyError, TypeError):
            meta = _Meta()
        # A file shorter than the recorded count (missing, or data lost to a power cut or a
        # full disk): its rows cannot be trusted, so start the cache again from nothing.
        stride = self._stride(meta)
        sizes = ((self._ids_path, 8 * meta.count), (self._rows_path, stride * meta.count))
        reset = any(not p.exists() or p.stat().st_size < size for p, size in sizes if size)
        if reset:
            meta = _Meta()
            sizes = ((self._ids_path, 0), (self._rows_path, 0))
        # rows past the recorded count are from a run that did not finish: drop them
        # (only ever shrinks a file: truncate would extend a short one with zeros)
        for path, size in sizes:
            if path.exists() and path.stat().st_size > size:
                with open(path, "r+b") as f:
                    f.truncate(size)
        if reset:
            self._write_meta(meta)
        return meta

    @staticmethod
    def _stride(meta: _Meta) -> int:
        if not meta.dtype:
            return 0
        return np.dtype(meta.dtype).itemsize * int(np.prod(meta.shape, dtype=np.int64))

    def _save(self) -> None:
        # the rows first, on disk, then the meta that counts them: a power cut never leaves
        # a meta.json counting rows that were not written
        for path in (self._ids_path, self._rows_path):
            if path.exists():
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self._write_meta(self.meta)

    def _write_meta(self, m: _Meta) -> None:
        tmp = self._meta_path.with_suffix(".tmp")
        body = json.dumps(
            {"dtype": m.dtype, "shape": list(m.shape), "count": m.count, "cursor": m.cursor}
        ).encode()
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._meta_path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- what is cached -----------------------------------------------------------------

    @property
    def cursor(self) -> int:
        """The highest item id the stream of new items has passed."""
        return self.meta.cursor

    def __len__(self) -> int:
        return self.meta.count

    @property
    def dtype(self) -> np.dtype | None:
        return np.dtype(self.meta.dtype) if self.meta.dtype else None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.meta.shape

    def ids(self) -> np.ndarray:
        if not self.meta.count:
            return np.empty(0, np.int64)
        return np.memmap(self._ids_path, dtype="<i8", mode="r", shape=(self.meta.count,))

    def rows(self) -> np.ndarray:
        """Every cached row, (count, *shape), memory-mapped read-only."""
        if not self.meta.count:
            return np.empty((0, *self.meta.shape), self.dtype or np.float32)
        return np.memmap(
            self._rows_path, dtype=self.dtype, mode="r", shape=(self.meta.count, *self.meta.shape)
        )

    @property
    def rows_path(self) -> Path:
        return self._rows_path

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """The row of each id, -1 where it is not cached."""
        if self._index is None or len(self._index[0]) != self.meta.count:
            cached = np.asarray(self.ids())
            order = np.argsort(cached, kind="stable")
            self._index = (cached[order], order)
        sorted_ids, order = self._index
        ids = np.asarray(ids, dtype=np.int64)
        if not len(sorted_ids):
            return np.full(len(ids), -1, np.int64)
        at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return np.where(sorted_ids[at] == ids, order[at], -1).astype(np.int64)

    # -- adding ---------------------------------------------------------------------------

    def append(
        self, ids: np.ndarray, dtype: str, shape: tuple[int, ...], data: bytes | memoryview
    ) -> None:
        """Append rows (not yet committed: `commit` records them and the cursor)."""
        if self.meta.dtype and (np.dtype(dtype), tuple(shape)) != (self.dtype, self.shape):
            raise Uncacheable(
                f"items of dtype {dtype} and shape {tuple(shape)} beside cached "
                f"{self.meta.dtype} {self.meta.shape}"
            )
        if not self.meta.dtype:
            self.meta.dtype, self.meta.shape = np.dtype(dtype).str, tuple(int(d) for d in shape)
        ids = np.asarray(ids, dtype="<i8")
        if len(data) != len(ids) * self._stride(self.meta):
            raise ValueError("rows and ids differ in length")
        # Written at the offsets of entry `count`, after cutting both files back to `count`
        # entries: what a failed append (ids written, rows not) left behind is overwritten,
        # never followed, so ids and rows stay in step.
        stride = self._stride(self.meta)
        for path, body, size in (
            (self._ids_path, ids.tobytes(), 8),
            (self._rows_path, data, stride),
        ):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                offset = size * self.meta.count
                os.ftruncate(fd, offset)
                view = memoryview(body).cast("B")
                while view:
                    n = os.pwrite(fd, view, offset)
                    view, offset = view[n:], offset + n
            finally:
                os.close(fd)
        self.meta.count += len(ids)

    def commit(self, cursor: int | None = None) -> None:
        """Record the appended rows (and move the cursor): what a restart will find."""
        if cursor is not None:
            self.meta.cursor = max(self.meta.cursor, int(cursor))
        self._save()

    def close(self) -> None:
        """Release the directory for another learner (a restarted one)."""
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self._ids_path, self._rows_path) if p.exists())
