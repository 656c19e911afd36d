"""Bringing remote results into the local cache: one place for `run`, `pull` and `show`.

A pulled record is kept locally with provenance that says so (the remote, and
whether a trusted key signed it), so a trusted job can tell it from what it
built itself.
"""

from __future__ import annotations

import dataclasses

from pipeline.cache import Cache
from pipeline.records import StageRecord
from pipeline.remote import Remote, RemoteRecord


def fetch(remote: Remote, cache: Cache, recipe: str, found: RemoteRecord) -> tuple[StageRecord, int]:
    """Download `found`'s objects (each checked) and keep its record; return it and the bytes downloaded.

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
    cache.records.set_latest(recipe, record.stage, record.key)
    cache.memo.flush()
    return record, downloaded
