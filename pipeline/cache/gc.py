"""Garbage collection: remove objects that no lock file and no latest record reference.

A --set variant's latest records are not roots unless asked for (`keep_variants`): a
smoke build is not something to keep, and its views and refs go with it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache import Cache
from pipeline.cache.lockfile import read_lock
from pipeline.cache.objects import BadObject
from pipeline.cache.trials import TRIALS, list_trials
from pipeline.cache.views import remove_view


@dataclass(frozen=True)
class GcResult:
    objects: int
    bytes: int
    records: int
    kept: int
    roots: int
    variants: int = 0
    trials: int = 0  # trial records removed (--trials)

    def describe(self, dry_run: bool) -> str:
        verb = "would remove" if dry_run else "removed"
        variants = f", {self.variants} --set variant(s) with their views" if self.variants else ""
        variants += f", {self.trials} trial(s)" if self.trials else ""
        return (
            f"{verb} {self.objects} objects ({self.bytes / 1e6:.1f} MB) and {self.records} records{variants}; "
            f"kept {self.kept} objects referenced by {self.roots} keys"
        )


def root_keys(cache: Cache, keep_variants: bool = False) -> set[str]:
    keys = cache.records.all_latest_keys(variants=keep_variants)
    try:
        lockfiles = cache.lockfiles_index().read_text().splitlines()
    except OSError:
        lockfiles = []
    for line in lockfiles:
        for entry in read_lock(Path(line)).values():
            if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                keys.add(entry["key"])
    return keys


def collect(cache: Cache, dry_run: bool = False, keep_variants: bool = False, drop_trials: bool = False) -> GcResult:
    """Trials (a search's, `pipeline.cache.trials`) are roots unless `drop_trials`: a search resumed after
    a gc recomputes none of them."""
    roots = root_keys(cache, keep_variants)
    variants = [] if keep_variants else cache.records.variants()
    if not dry_run:
        for name in variants:
            shutil.rmtree(cache.records.refs / name, ignore_errors=True)
            remove_view(cache.root / name)
    live: set[str] = set()
    dead_records = []
    for record in cache.records.all():
        if record.key not in roots:
            dead_records.append(record)
            continue
        for out in record.outputs.values():
            live.add(out.digest)
            if out.is_dir:
                try:
                    live.update(e["digest"] for e in cache.objects.manifest(out.digest))
                except BadObject:
                    pass
    trials = list_trials(cache.root / TRIALS)
    if not drop_trials:
        for digest, _ in trials:
            live.add(digest)
            try:
                live.update(e["digest"] for e in cache.objects.manifest(digest))
            except BadObject:
                pass
    for failure in cache.failures.all():  # a failed gate's reports, which `plan` and `summary` show
        live.update(o.digest for o in failure.reports.values())
    removed = size = 0
    for digest in cache.objects.all_objects():
        if digest in live:
            continue
        removed += 1
        size += cache.objects.stored_size(digest) if dry_run else cache.objects.remove(digest)
    if not dry_run:
        for record in dead_records:
            (cache.records.records / record.key[:2] / f"{record.key[2:]}.json").unlink(missing_ok=True)
        for _, path in trials if drop_trials else []:
            path.unlink(missing_ok=True)
    dropped = len(trials) if drop_trials else 0
    return GcResult(removed, size, len(dead_records), len(live), len(roots), len(variants), dropped)
