"""Garbage collection on the remote (`pipeline gc --remote`): drop records no root names and older than a
limit, the objects no remaining record names, and the scratch prefixes killed read-only cluster runs left.

The roots come from the local cache (pipeline/cache/gc.py `root_keys`): the caller passes them in, so the
local cache never imports the remote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pipeline.remote.store import Remote


@dataclass(frozen=True)
class RemoteGcResult:
    records: int
    objects: int
    bytes: int
    kept_records: int
    kept_objects: int
    young: int  # unreferenced objects spared because they may belong to an upload whose record is not up yet
    scratch: int = 0  # scratch prefixes that read-only cluster runs left (killed before they cleaned up)

    def describe(self, url: str, dry_run: bool, grace_hours: float) -> str:
        verb = "would remove" if dry_run else "removed"
        return (
            f"{url}: {verb} {self.records} records and {self.objects} objects ({self.bytes / 1e6:.1f} MB); "
            f"kept {self.kept_records} records, {self.kept_objects} objects they name, "
            f"{self.young} unreferenced objects younger than {grace_hours:g} h"
            + (f"; {verb} {self.scratch} scratch prefixes of read-only cluster runs" if self.scratch else "")
        )


def collect_remote(
    remote: Remote, roots: set[str], keep_days: float, grace_hours: float, dry_run: bool = False
) -> RemoteGcResult:
    """Drop remote records that no root names and that are older than `keep_days`, then the objects no
    remaining record names. An object younger than `grace_hours` is never removed: uploads send objects
    first and the record last, so a fresh object without a record is an upload in flight."""
    now = time.time()
    records = _listing(remote, "records")
    kept: set[str] = set()
    live: set[str] = set()
    dropped = 0
    for key, (_, modified) in records.items():
        doc = remote.read_record(key)
        if key in roots or now - modified < keep_days * 86400:
            kept.add(key)
            if doc is not None and isinstance(doc.get("objects"), dict):
                live.update(str(d) for d in doc["objects"])
            continue
        dropped += 1
        if not dry_run:
            remote.delete_record(key)
    removed = size = young = 0
    for digest, (nbytes, modified) in _listing(remote, "objects").items():
        if digest in live:
            continue
        if now - modified < grace_hours * 3600:
            young += 1
            continue
        removed += 1
        size += nbytes
        if not dry_run:
            remote.delete_object(digest)
    left = 0
    for run, (nbytes, newest) in _scratch_runs(remote).items():
        if now - newest >= grace_hours * 3600:
            left += 1
            size += nbytes
            if not dry_run:
                remote.delete_scratch(run)
    return RemoteGcResult(dropped, removed, size, len(kept), len(live), young, left)


def _listing(remote: Remote, folder: str) -> dict[str, tuple[int, float]]:
    """Every file under objects/ or records/: its name (digest, or key) -> (size, modified, epoch seconds)."""
    base, found = remote.find(folder)
    out = {}
    for path, info in found.items():
        rel = path[len(base) :].strip("/").split("/")
        if len(rel) != 2 or ".tmp-" in rel[1]:
            continue
        out[rel[0] + rel[1].removesuffix(".json")] = (int(info.get("size") or 0), _modified(info))
    return out


def _scratch_runs(remote: Remote) -> dict[str, tuple[int, float]]:
    """Read-only cluster runs' scratch prefixes (pipeline/run/cluster.py): run id -> (bytes, newest write)."""
    base, found = remote.find("scratch")
    out: dict[str, tuple[int, float]] = {}
    for path, info in found.items():
        run = path[len(base) :].strip("/").split("/")[0]
        nbytes, newest = out.get(run, (0, 0.0))
        out[run] = (nbytes + int(info.get("size") or 0), max(newest, _modified(info)))
    return out


def _modified(info: dict[str, Any]) -> float:
    """When a listed file was last written, from whichever field the backend gives."""
    import datetime

    for field in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(field)
        if isinstance(value, datetime.datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0
