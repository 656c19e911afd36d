"""A remote store by digest: the `ObjectDb` that transfers read and write (pipeline/remote/transfer.py),
and the `Objects` a task on another machine uses (pipeline/cache/objects.py), over pipeline/remote/store.py's
`Remote`. Every byte read from the remote comes through `readable`, the one place a download is checked
against its digest and size; every upload through `add`. The driver, not a node, writes records.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline.cache.hashing import sha256_bytes, sha256_file
from pipeline.cache.objects import READ_ONLY, BadObject, manifest_bytes
from pipeline.remote.store import Remote


class RemoteObjects:
    is_local = False

    def __init__(self, remote: Remote):
        self.remote = remote

    @property
    def url(self) -> str:
        return self.remote.url

    # -- ObjectDb ----------------------------------------------------------------------------------
    def holds(self, digest: str, size: int | None) -> bool:
        return self.remote.present(digest, size)

    def size_of(self, digest: str) -> int:
        return self.remote.stored_size(digest)

    def staging(self) -> Path | None:
        return None  # an upload needs no staging

    @contextmanager
    def readable(self, digest: str, size: int | None, near: Path | None = None) -> Iterator[Path]:
        """Download to a temporary file in `near` (where it will be kept: no second copy, and a killed run's
        leftover is the cache's to clean) and check it; raises BadObject (or RemoteUnavailable)."""
        if near is not None:
            near.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=near, prefix=f"{os.getpid()}-download-")
        os.close(fd)
        tmp = Path(name)
        try:
            try:
                self.remote.call("download", self.remote.fs.get_file, self.remote.object_path(digest), str(tmp))
            except FileNotFoundError:
                raise BadObject(f"object {digest[:12]} is missing on the remote") from None
            got = tmp.stat().st_size
            if (size is not None and got != size) or sha256_file(tmp) != digest:
                expected = f", expected {size}" if size is not None else ""
                raise BadObject(f"object {digest[:12]} from the remote is corrupted ({got} bytes{expected})")
            self.remote.transfer.downloaded += got
            self.remote.transfer.objects_down += 1
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def add(self, src: Path, digest: str) -> None:
        size = src.stat().st_size
        self.remote.upload(src, self.remote.object_path(digest))
        self.remote.transfer.uploaded += size
        self.remote.transfer.objects_up += 1

    def manifest(self, digest: str) -> list[dict[str, str]]:
        return self.remote.manifest(digest)

    # -- Objects (a task's store) -------------------------------------------------------------------
    def has(self, digest: str, is_dir: bool) -> bool:
        try:
            if not self.holds(digest, None):
                return False
            return not is_dir or all(self.holds(e["digest"], None) for e in self.manifest(digest))
        except BadObject:
            return False

    def fetch(self, digest: str, is_dir: bool, dest: Path) -> None:
        """The object at `dest` (read-only), every file checked against its digest; raises BadObject."""
        files = [(digest, dest)] if not is_dir else [(e["digest"], dest / e["path"]) for e in self.manifest(digest)]
        if is_dir:
            dest.mkdir(parents=True, exist_ok=True)
        for file_digest, path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self.readable(file_digest, None, near=path.parent) as tmp:  # staged beside `path`
                os.chmod(tmp, READ_ONLY)
                os.replace(tmp, path)

    def put(self, src: Path, is_dir: bool) -> str:
        """Upload the file or directory at `src` (consumed) and return its digest (a manifest's, for a directory)."""
        if not is_dir:
            return self._put_file(src)
        data = manifest_bytes(src, self._put_file)
        digest = sha256_bytes(data)
        if not self.holds(digest, len(data)):
            tmp = src.with_name(f".{src.name}.manifest")
            tmp.write_bytes(data)
            try:
                self.add(tmp, digest)
            finally:
                tmp.unlink(missing_ok=True)
        shutil.rmtree(src)
        return digest

    def size(self, digest: str, is_dir: bool) -> int:
        if not is_dir:
            return self.size_of(digest)
        return sum(self.size_of(e["digest"]) for e in self.manifest(digest))

    def flush(self) -> None:
        return None  # every put is on the remote when it returns

    def _put_file(self, src: Path) -> str:
        digest = sha256_file(src)
        if not self.holds(digest, src.stat().st_size):
            self.add(src, digest)
        src.unlink()
        return digest
