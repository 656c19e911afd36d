"""Moving results between the local cache and a remote: pulls for `run`, `pull`, `show` and `summary`,
and the write-through uploads of a run.

A pulled record is kept locally with provenance that says so (the remote, and
whether a trusted key signed it), so a trusted job can tell it from what it
built itself.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Iterable

from pipeline.cache import Cache
from pipeline.cache.records import StageRecord
from pipeline.remote.store import Remote, RemoteRecord


def fetch(remote: Remote, cache: Cache, recipe: str, stage: str, found: RemoteRecord) -> tuple[StageRecord, int]:
    """Download `found`'s objects (each checked) and keep its record as `recipe`'s latest `stage` (whatever
    name it was built under); return it and the bytes downloaded.

    Raises BadObject or RemoteUnavailable, with nothing recorded.
    """
    downloaded = remote.pull(found, cache.objects)
    provenance = {
        **found.record.provenance,
        "origin": "pulled",
        "remote": remote.url,
        "verified": found.verified,
        "signer": found.signer,
    }
    record = dataclasses.replace(found.record, provenance=provenance)
    cache.records.put(record)
    cache.records.set_latest(recipe, stage, record.key)
    cache.memo.flush()
    return record, downloaded


class LeftOnRemote:
    """The stages a run took from the remote without their objects (not wanted here), until a stage that
    runs here reads them; and those whose objects the remote then could not deliver."""

    def __init__(self, remote: Remote | None, cache: Cache, recipe: str):
        self.remote, self.cache, self.recipe = remote, cache, recipe
        self.held: dict[str, RemoteRecord] = {}
        self.undeliverable: set[str] = set()

    def __contains__(self, stage: str) -> bool:
        return stage in self.held

    def hold(self, stage: str, found: RemoteRecord) -> None:
        self.held[stage] = found

    def release(self, stage: str) -> None:
        self.held.pop(stage, None)

    def deliver(self, stages: Iterable[str]) -> tuple[dict[str, StageRecord], str | None]:
        """Download the held ones among `stages` (each checked): the records that came down, and the first
        stage whose objects could not (a corrupted one is rejected on the remote for this run)."""
        from pipeline.remote.store import BadObject, RemoteUnavailable

        got: dict[str, StageRecord] = {}
        for stage in sorted(set(stages) & set(self.held)):
            if stage in self.undeliverable:
                return got, stage
            found = self.held[stage]
            assert self.remote is not None, "only a remote's records are held"
            try:
                got[stage], _ = fetch(self.remote, self.cache, self.recipe, stage, found)
            except (BadObject, RemoteUnavailable) as exc:
                if isinstance(exc, BadObject):
                    self.remote.reject(found.record.key, str(exc))
                self.undeliverable.add(stage)
                return got, stage
            del self.held[stage]
        return got, None


class Uploads:
    """Write-through: each record this run built goes to the remote (objects, then the record, signed when a
    key is configured) on a background thread while later stages run; `wait` before the process exits."""

    def __init__(self, remote: Remote, cache: Cache):
        from concurrent.futures import ThreadPoolExecutor

        self.remote, self.cache = remote, cache
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="upload")
        self.futures: list[Any] = []

    def submit(self, record: StageRecord) -> None:
        if self.remote.signer is not None:
            self.remote.signer.ready()  # a bad key fails here, in the engine, not in an upload thread
        self.futures.append(self.pool.submit(self._push, record))

    def _push(self, record: StageRecord) -> None:
        from pipeline.remote.store import RemoteUnavailable

        try:
            self.remote.push(record, self.cache.objects, sign=True)
        except RemoteUnavailable:
            pass  # warned once by the remote; the local result stands
        except Exception as exc:  # noqa: BLE001 - an upload never fails the run: the local result stands
            warnings.warn(f"stage {record.stage} was not uploaded: {type(exc).__name__}: {exc}", stacklevel=1)

    def wait(self) -> None:
        for f in self.futures:
            f.result()
        self.pool.shutdown()
