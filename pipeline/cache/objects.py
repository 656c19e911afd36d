"""The content-addressed object store: write once by rename, verify before use.

A file output is one object named by its sha256. A directory output is its
files' objects plus a manifest object (sorted relative path -> digest), named
by the manifest's own digest, as DVC's `.dir` entries are.

Two views of a store, both implemented by the remote store too (pipeline/remote/objects.py):
- `Objects`, what a stage's task needs: has / fetch to a path / put from a path, by digest;
- `ObjectDb`, what moving objects between two stores needs (pipeline/remote/transfer.py): one object at a
  time, read checked against its digest, added by rename.
Only this module and the local cache's own maintenance (`gc`, `verify`) know where an object lies on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Protocol

from pipeline.cache.hashing import DigestMemo, canonical_json, sha256_bytes, sha256_file

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class Objects(Protocol):
    """What a stage's task needs of a store: objects by digest, never by where they lie."""

    def has(self, digest: str, is_dir: bool) -> bool:
        """Present (a directory: its manifest and every file it lists); the local store also checks the
        bytes (by stamp), a remote checks them on `fetch`."""
        ...

    def fetch(self, digest: str, is_dir: bool, dest: Path) -> None:
        """Make the object appear at `dest` (read-only; the caller owns `dest`); never bytes that fail
        their digest from a remote."""
        ...

    def put(self, src: Path, is_dir: bool) -> str:
        """Store the file or directory at `src` (consumed) and return its digest."""
        ...

    def size(self, digest: str, is_dir: bool) -> int: ...

    def flush(self) -> None:
        """Persist what the store remembers about what was put (the local digest memo)."""
        ...


class BadObject(Exception):
    """An object is missing, short, or not the bytes its digest names; the message is one line."""


class ObjectDb(Protocol):
    """A store as objects move between two of them: one object at a time, by digest."""

    is_local: bool  # on this machine's disk: where a directory's manifest is read, after it moved

    def holds(self, digest: str, size: int | None) -> bool:
        """Present (at `size` bytes, when given); the local store also checks the bytes (by stamp)."""
        ...

    def size_of(self, digest: str) -> int:
        """One object's size in this store; FileNotFoundError when it is not there."""
        ...

    def readable(self, digest: str, size: int | None, near: Path | None = None) -> Any:
        """A context manager giving a local file with the object's bytes, checked against its digest (and
        `size`); raises BadObject. The file is the caller's to read or to `add` elsewhere until the block ends;
        one downloaded for it is staged in `near` (a folder on the filesystem where it will be kept)."""
        ...

    def staging(self) -> Path | None:
        """Where an object on its way in is best staged (the same filesystem: added by rename), or None."""
        ...

    def add(self, src: Path, digest: str) -> None:
        """Keep the local file `src`, already checked to be `digest`, as that object (`src` may be consumed)."""
        ...

    def manifest(self, digest: str) -> list[dict[str, str]]:
        """A directory object's entries; raises BadObject (a transfer checks their paths, `safe_entries`)."""
        ...


class ObjectStore:
    """The local store: objects/<2 hex>/<62 hex>, read-only files, written by rename."""

    is_local = True

    def __init__(self, root: Path, memo: DigestMemo):
        self.root = root
        self.objects = root / "objects"
        self.memo = memo

    def path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest[2:]

    # -- the Objects protocol ----------------------------------------------
    def has(self, digest: str, is_dir: bool) -> bool:
        return self.verify(digest, is_dir)

    def fetch(self, digest: str, is_dir: bool, dest: Path) -> None:
        self.materialize(digest, is_dir, dest, link=True)

    def put(self, src: Path, is_dir: bool) -> str:
        return self.put_dir(src) if is_dir else self.put_file(src)

    def flush(self) -> None:
        self.memo.flush()

    def problem(self, digest: str, is_dir: bool) -> str | None:
        """Why the object cannot be used ("missing" or "corrupted"), or None when `has` holds."""
        if self.verify(digest, is_dir):
            return None
        return "corrupted" if self.path(digest).exists() else "missing"

    # -- writing ---------------------------------------------------------
    def put_file(self, src: Path) -> str:
        """Move `src` into the store (it is consumed); return its digest."""
        digest = sha256_file(src)
        dest = self.path(digest)
        if dest.exists() and self.verify_file(digest):
            src.unlink()
            return digest
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(src, READ_ONLY)
        os.replace(src, dest)
        self.memo.remember(dest, digest)
        return digest

    def put_bytes(self, data: bytes) -> str:
        tmp = self._tmpfile()
        tmp.write_bytes(data)
        return self.put_file(tmp)

    def put_dir(self, src: Path) -> str:
        """Store every file below `src` and a manifest; return the manifest's digest (`src` is consumed)."""
        digest = self.put_bytes(manifest_bytes(src, self.put_file))
        shutil.rmtree(src)  # only empty folders are left
        return digest

    def _tmpfile(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.staging(), prefix=f"{os.getpid()}-obj-")
        os.close(fd)
        return Path(name)

    # -- the ObjectDb protocol (pipeline/remote/transfer.py) ------------------------
    def holds(self, digest: str, size: int | None) -> bool:
        return self.verify_file(digest)

    def size_of(self, digest: str) -> int:
        return self.stored_size(digest)

    def staging(self) -> Path:
        tmpdir = self.root / "tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        return tmpdir

    @contextmanager
    def readable(self, digest: str, size: int | None, near: Path | None = None) -> Iterator[Path]:
        """The object's own file, once its bytes check out (by stamp): never a corrupted object sent on."""
        if not self.verify_file(digest):
            raise BadObject(f"object {digest[:12]} is {self.problem(digest, False)} in the local cache")
        yield self.path(digest)

    def add(self, src: Path, digest: str) -> None:
        """Move (or copy, across filesystems) `src` into the store under `digest` without hashing it again."""
        tmp = self._tmpfile()
        try:
            try:
                os.replace(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, READ_ONLY)
            dest = self.path(digest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        self.memo.remember(dest, digest)

    # -- reading ---------------------------------------------------------
    def read_checked(self, digest: str) -> bytes:
        """A file object's bytes, hashed as read (not by stamp: what is shown must be what the name says)."""
        try:
            data = self.path(digest).read_bytes()
        except OSError:
            raise BadObject(f"object {digest[:12]} is missing in the local cache") from None
        if sha256_bytes(data) != digest:
            raise BadObject(f"object {digest[:12]} is corrupted in the local cache")
        return data

    def manifest(self, digest: str) -> list[dict[str, str]]:
        """A directory object's entries as stored here (what came from elsewhere was checked on its way in,
        pipeline/remote/transfer.py); raises BadObject."""
        try:
            entries = json.loads(self.path(digest).read_bytes())
            return [{"path": str(e["path"]), "digest": str(e["digest"])} for e in entries]
        except OSError:
            raise BadObject(f"manifest {digest[:12]} is missing in the local cache") from None
        except (ValueError, KeyError, TypeError):
            raise BadObject(f"manifest {digest[:12]} is unreadable in the local cache") from None

    def verify_file(self, digest: str, rehash: bool = False) -> bool:
        p = self.path(digest)
        try:
            if rehash:
                self.memo.forget(p)
            return self.memo.file_digest(p) == digest
        except OSError:
            return False

    def verify(self, digest: str, is_dir: bool, rehash: bool = False) -> bool:
        """True when the object (and, for a directory, every file it lists) is present and intact."""
        if not self.verify_file(digest, rehash):
            return False
        if not is_dir:
            return True
        try:
            entries = self.manifest(digest)
        except BadObject:
            return False
        return all(self.verify_file(e["digest"], rehash) for e in entries)

    def size(self, digest: str, is_dir: bool) -> int:
        if not is_dir:
            return self.path(digest).stat().st_size
        return sum(self.path(e["digest"]).stat().st_size for e in self.manifest(digest))

    def materialize(self, digest: str, is_dir: bool, dest: Path, link: bool = True) -> None:
        """Make the object appear at `dest`: hard links (cheap) for stage inputs, copies for views."""
        if not is_dir:
            _place(self.path(digest), dest, link)
            return
        dest.mkdir(parents=True, exist_ok=True)
        for e in self.manifest(digest):
            target = dest / e["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            _place(self.path(e["digest"]), target, link)

    def all_objects(self) -> list[str]:
        if not self.objects.is_dir():
            return []
        return sorted(p.parent.name + p.name for p in self.objects.glob("??/*"))

    def stored_size(self, digest: str) -> int:
        """Bytes one object (not what a manifest lists) takes in the store."""
        return self.path(digest).stat().st_size

    def remove(self, digest: str) -> int:
        p = self.path(digest)
        size = p.stat().st_size
        p.unlink()
        self.memo.forget(p)
        return size


def manifest_bytes(src: Path, put_file: Callable[[Path], str]) -> bytes:
    """A directory's manifest (sorted relative path -> digest), each file stored by `put_file` on the way."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            entries.append({"path": p.relative_to(src).as_posix(), "digest": put_file(p)})
    entries.sort(key=lambda e: e["path"])
    return canonical_json(entries).encode()


class UnsafeManifest(ValueError):
    """A manifest from elsewhere names a path outside its directory, or is not a manifest at all."""


def checked_manifest(data: bytes, digest: str) -> list[dict[str, str]]:
    """Parse a manifest that came from another machine and check it (`safe_entries`)."""
    try:
        entries = json.loads(data)
    except ValueError as exc:
        raise UnsafeManifest(f"manifest {digest[:12]} is unreadable ({type(exc).__name__})") from None
    return safe_entries(entries, digest)


def safe_entries(entries: Any, digest: str) -> list[dict[str, str]]:
    """Manifest entries, refusing a path that would leave its directory (`..`, absolute, a backslash) or an
    entry that is not a path and a digest; raises UnsafeManifest."""
    try:
        pairs = [(e["path"], e["digest"]) for e in entries]
    except (KeyError, TypeError) as exc:
        raise UnsafeManifest(f"manifest {digest[:12]} is unreadable ({type(exc).__name__})") from None
    for path, d in pairs:
        p = PurePosixPath(path) if isinstance(path, str) else None
        if p is None or not path or p.is_absolute() or ".." in p.parts or "\\" in path:
            raise UnsafeManifest(f"manifest {digest[:12]} names an unsafe path {path!r}")
        if not isinstance(d, str) or len(d) != 64:
            raise UnsafeManifest(f"manifest {digest[:12]} names a bad digest for {path!r}")
    return entries


def _place(src: Path, dest: Path, link: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dest)
            return
        except OSError:
            pass
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, READ_ONLY)
    os.replace(tmp, dest)
