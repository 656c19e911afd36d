"""Results whose objects live on a remote: the one owner of what a run (or `pull`, `show`, `summary`) knows
by record before, or instead of, having the bytes here.

A result is taken (`take`: objects downloaded, each checked, then the record adopted into the local cache),
held (`hold`: known by its record; its objects stay on the remote until a stage that runs here reads them),
or delivered later (`deliver`). A download that fails its check is written once, here: the record is
rejected on the remote for the rest of the run and the stage is `Undeliverable`, so the caller builds it.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from pipeline.cache import Cache
from pipeline.cache.objects import BadObject
from pipeline.cache.records import StageRecord
from pipeline.remote.store import Remote, RemoteRecord, RemoteUnavailable
from pipeline.remote.sync import pull


class Undeliverable(Exception):
    """The remote cannot deliver a result's objects (corrupted, or the remote went away); one line."""

    def __init__(self, message: str, corrupted: bool):
        super().__init__(message)
        self.corrupted = corrupted


@dataclasses.dataclass(frozen=True)
class Taken:
    record: StageRecord  # as kept in the local cache
    downloaded: int  # bytes


class RemoteResults:
    """What one run holds of `remote`'s results, recorded under `recipe`'s stage names."""

    def __init__(self, remote: Remote, cache: Cache, recipe: str):
        self.remote, self.cache, self.recipe = remote, cache, recipe
        self.held: dict[str, tuple[RemoteRecord, bool]] = {}  # stage -> (its result, whether pulled)
        self.undeliverable: set[str] = set()

    def __contains__(self, stage: str) -> bool:
        return stage in self.held

    def take(self, stage: str, found: RemoteRecord, pulled: bool = True) -> Taken:
        """Download `found`'s objects and keep its record as `stage`'s latest (whatever name it was built
        under); `pulled` marks its provenance as pulled from the remote (False: this run built it on a
        cluster node). Raises Undeliverable, with nothing recorded."""
        try:
            downloaded = pull(self.remote, found, self.cache.objects)
        except BadObject as exc:
            self.remote.reject(found.record.key, str(exc))
            raise Undeliverable(f"{stage}: corrupted on the remote ({exc})", corrupted=True) from None
        except RemoteUnavailable as exc:
            raise Undeliverable(f"{stage}: {exc}", corrupted=False) from None
        return Taken(self.adopt(stage, found, pulled), downloaded)

    def adopt(self, stage: str, found: RemoteRecord, pulled: bool = True) -> StageRecord:
        """Keep `found`'s record as `stage`'s latest; its objects must be here already."""
        record = found.record
        if pulled:
            provenance = {
                **record.provenance,
                "origin": "pulled",
                "remote": self.remote.url,
                "verified": found.verified,
                "signer": found.signer,
            }
            record = dataclasses.replace(record, provenance=provenance)
        self.cache.records.put(record)
        self.cache.records.set_latest(self.recipe, stage, record.key)
        self.cache.memo.flush()
        return record

    def settle(self, stage: str, found: RemoteRecord, here: bool, pulled: bool = True) -> StageRecord:
        """`stage`'s result from the remote: taken now when wanted `here`, else held (its record only).
        Raises Undeliverable."""
        if here:
            return self.take(stage, found, pulled).record
        self.held[stage] = (found, pulled)
        return found.record

    def release(self, stage: str) -> None:
        """Forget a held result (its stage is rebuilt here)."""
        self.held.pop(stage, None)

    def deliver(self, stages: Iterable[str]) -> tuple[dict[str, StageRecord], str | None]:
        """Download the held results among `stages` (a stage about to run here reads them): the records that
        came down, and the first stage whose objects could not (to be rebuilt here)."""
        got: dict[str, StageRecord] = {}
        for stage in sorted(set(stages) & set(self.held)):
            if stage in self.undeliverable:
                return got, stage
            try:
                got[stage] = self.take(stage, *self.held[stage]).record
            except Undeliverable:
                self.undeliverable.add(stage)
                return got, stage
            del self.held[stage]
        return got, None
