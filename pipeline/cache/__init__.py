"""The cache root and its parts: digest memo, object store, records, locks, runs, graph memos."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.cache.failures import FailureStore
from pipeline.cache.hashing import DigestMemo
from pipeline.cache.objects import ObjectStore
from pipeline.cache.records import RecordStore
from pipeline.errors import UsageError

DEFAULT_ROOT = "artifacts"
RESERVED = {"objects", "records", "refs", "runs", "tmp", "locks", "side", "graphs", "remote-index", "failures"}
RESERVED |= {"trials"}  # a search's trials (pipeline/cache/trials.py)


def cache_root(explicit: str | None = None) -> Path:
    """--cache-dir, else $PIPELINE_CACHE, else ./artifacts."""
    root = Path(explicit or os.environ.get("PIPELINE_CACHE") or DEFAULT_ROOT).resolve()
    if root.exists() and not root.is_dir():
        raise UsageError(f"cache directory {root} is not a directory")
    return root


class Cache:
    def __init__(self, root: Path):
        self.root = root
        self.memo = DigestMemo(root / "state.db")
        self.objects = ObjectStore(root, self.memo)
        self.records = RecordStore(root)
        self.failures = FailureStore(root)  # how stages failed, by key (plan, status and summary say so)
        self.locks = root / "locks"
        self.tmp = root / "tmp"
        self.runs = root / "runs"
        self.side = root / "side"
        self.graphs = root / "graphs"  # remembered stage orders (pipeline.recipe.graph), keyed by recipe structure

    def view_dir(self, recipe: str, stage: str) -> Path:
        return self.root / recipe / stage

    def lockfiles_index(self) -> Path:
        """Lock files written against this cache: roots for gc."""
        return self.root / "lockfiles.txt"
