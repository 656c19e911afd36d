"""A remote store as the object store of a task on another machine: the Objects protocol
(pipeline/cache/objects.py) over pipeline/remote/store.py's `Remote`. A cluster node reads its inputs and stores its
outputs here, by digest, every download checked against its digest; the driver, not the node, then
writes the record.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from pipeline.cache.hashing import sha256_bytes, sha256_file
from pipeline.cache.objects import READ_ONLY, manifest_bytes
from pipeline.remote.store import BadObject, Remote


class RemoteObjects:
    def __init__(self, remote: Remote):
        self.remote = remote

    @property
    def url(self) -> str:
        return self.remote.url

    def has(self, digest: str, is_dir: bool) -> bool:
        try:
            if not self._exists(digest):
                return False
            return not is_dir or all(self._exists(e["digest"]) for e in self.remote.manifest(digest))
        except BadObject:
            return False

    def fetch(self, digest: str, is_dir: bool, dest: Path) -> None:
        """Download into `dest` (read-only), every file checked against its digest; raises BadObject."""
        if not is_dir:
            self._download(digest, dest)
            return
        entries = self.remote.manifest(digest)
        dest.mkdir(parents=True, exist_ok=True)
        for e in entries:
            self._download(e["digest"], dest / e["path"])

    def put(self, src: Path, is_dir: bool) -> str:
        """Upload the file or directory at `src` (consumed) and return its digest (a manifest's, for a directory)."""
        if not is_dir:
            return self._put_file(src)
        data = manifest_bytes(src, self._put_file)
        digest = sha256_bytes(data)
        if not self.remote.present(digest, len(data)):
            tmp = src.with_name(f".{src.name}.manifest")
            tmp.write_bytes(data)
            try:
                self.remote.upload(tmp, self.remote.object_path(digest))
            finally:
                tmp.unlink(missing_ok=True)
        shutil.rmtree(src)
        return digest

    def size(self, digest: str, is_dir: bool) -> int:
        if not is_dir:
            return self.remote.stored_size(digest)
        return sum(self.size(e["digest"], False) for e in self.remote.manifest(digest))

    def flush(self) -> None:
        return None  # every put is on the remote when it returns

    def _exists(self, digest: str) -> bool:
        try:
            self.remote.call("stat object", self.remote.fs.info, self.remote.object_path(digest))
        except FileNotFoundError:
            return False
        return True

    def _download(self, digest: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self.remote.call("download", self.remote.fs.get_file, self.remote.object_path(digest), str(tmp))
            if sha256_file(tmp) != digest:
                raise BadObject(f"object {digest[:12]} from the remote is corrupted")
            os.chmod(tmp, READ_ONLY)
            os.replace(tmp, dest)
        except FileNotFoundError:
            raise BadObject(f"object {digest[:12]} is missing on the remote") from None
        finally:
            tmp.unlink(missing_ok=True)
        self.remote.transfer.downloaded += dest.stat().st_size
        self.remote.transfer.objects_down += 1

    def _put_file(self, src: Path) -> str:
        digest = sha256_file(src)
        size = src.stat().st_size
        if not self.remote.present(digest, size):
            self.remote.upload(src, self.remote.object_path(digest))
            self.remote.transfer.uploaded += size
            self.remote.transfer.objects_up += 1
        src.unlink()
        return digest
