"""Content digests of files, directories and Python code, memoised by (inode, mtime, size).

The memo lives in a small SQLite file in the cache so a cached rerun stats a
100 MB ONNX file instead of rehashing it (dvc-data's state.py does the same).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Callable

CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: equal values always give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data (numpy scalars by value, anything else by its str): what a stage returns
    as a summary may hold either."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


class DigestMemo:
    """File digests keyed by path and validated by (inode, mtime_ns, size)."""

    def __init__(self, db_path: Path | None):
        self._db_path = db_path
        self._db: sqlite3.Connection | None = None
        self._opened = False
        self._mem: dict[str, tuple[int, int, int, str]] = {}
        self._dirty: dict[str, tuple[int, int, int, str] | None] = {}
        # Lookups derived from files for one plan, such as import closures (`new_plan` starts afresh).
        self.scratch: dict[str, Any] = {}

    def new_plan(self) -> None:
        """Forget what the last plan derived (closures, folder listings): a process that plans again, such as
        a test or a long-lived driver, must see code edited since. File digests stay, checked by stamp."""
        self.scratch.clear()

    def _conn(self, create: bool) -> sqlite3.Connection | None:
        """Open the memo lazily: reading never creates the cache directory, only flushing does."""
        if self._db is None and self._db_path is not None and (create or self._db_path.exists()):
            try:
                self._db_path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self._db_path, timeout=30, isolation_level=None)
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, ino INTEGER, "
                    "mtime INTEGER, size INTEGER, digest TEXT)"
                )
            except sqlite3.Error:
                self._db, self._db_path = None, None  # a broken memo only costs speed
        return self._db

    def flush(self) -> None:
        """Write remembered digests in one transaction."""
        if not self._dirty:
            return
        db = self._conn(create=True)
        if db is not None:
            try:
                with db:
                    db.execute("BEGIN")
                    for key, value in self._dirty.items():
                        if value is None:
                            db.execute("DELETE FROM digests WHERE path=?", (key,))
                        else:
                            db.execute("INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?)", (key, *value))
            except sqlite3.Error:
                pass
        self._dirty.clear()

    def file_digest(self, path: Path) -> str:
        return self.derived(path, "", sha256_file)

    def derived(self, path: Path, what: str, compute: Callable[[Path], str]) -> str:
        """A value computed from a file's bytes (its digest; the names a module defines), memoised by
        (inode, mtime, size): recomputed only when the file changed."""
        path = Path(os.path.abspath(path))
        st = path.stat()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        key = f"{what}:{path}" if what else str(path)
        hit = self._mem.get(key)
        db = self._conn(create=False) if hit is None and key not in self._dirty else None
        if db is not None:
            try:
                row = db.execute("SELECT ino, mtime, size, digest FROM digests WHERE path=?", (key,)).fetchone()
            except sqlite3.Error:
                row = None
            hit = tuple(row) if row else None
        if hit is not None and tuple(hit[:3]) == stamp:
            return hit[3]
        value = compute(path)
        self._mem[key] = self._dirty[key] = (*stamp, value)
        return value

    def remember(self, path: Path, digest: str, stamp: tuple[int, int, int] | None = None) -> None:
        key = str(Path(os.path.abspath(path)))
        if stamp is None:
            st = os.stat(key)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        self._mem[key] = (*stamp, digest)
        self._dirty[key] = (*stamp, digest)

    def forget(self, path: Path) -> None:
        key = str(Path(os.path.abspath(path)))
        self._mem.pop(key, None)
        self._dirty[key] = None

    def dir_manifest(self, root: Path) -> list[dict[str, str]]:
        """Sorted (relative path, digest) of every file below `root`."""
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in filenames:
                p = Path(dirpath) / name
                entries.append({"path": p.relative_to(root).as_posix(), "digest": self.file_digest(p)})
        return sorted(entries, key=lambda e: e["path"])

    def path_digest(self, path: Path) -> str:
        """A file's content digest, or a directory's manifest digest."""
        if path.is_dir():
            return sha256_bytes(canonical_json(self.dir_manifest(path)).encode())
        return self.file_digest(path)
