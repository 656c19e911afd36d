"""What this machine has seen on a remote: the record documents it read there or wrote there, kept in the
local cache so that a rerun asks the remote nothing about a stage whose outputs it never downloaded.

Bazel keeps the metadata of outputs it left on a remote cache the same way. An entry is the remote's
document as it was (signature included), so a lookup served from here is checked against the trust
configured now, as one from the network is. It is a hint about the remote, never a result: a key is a
content hash, so an entry is never stale, but the remote may have lost the objects since (`gc --remote`,
another machine's bucket policy). Then the download of a stage that needs them fails its check, the entry
is dropped, and the stage builds here, as for any object the remote cannot deliver.

Layout: `<cache>/remote-index/<sha256 of the remote's URL, 16 hex>/<2 hex>/<rest of key>.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.cache.hashing import sha256_bytes
from pipeline.cache.records import write_json_atomic


class RemoteIndex:
    """Record documents known to be on one remote, by stage key."""

    def __init__(self, cache_root: Path, url: str):
        self.root = cache_root / "remote-index" / sha256_bytes(url.encode())[:16]

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key[2:]}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The remembered document, or None (absent or unreadable: the remote is asked instead)."""
        try:
            doc = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def put(self, key: str, doc: dict[str, Any]) -> None:
        try:
            write_json_atomic(self._path(key), doc, indent=None)
        except OSError:
            pass  # only a hint: the next run asks the remote

    def drop(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
