"""Trials in the cache: a stage's sub-results (a search's trials), each stored under its own key.

    trial key = H(base, identity)    base = H(the stage's key components, less its `trial_neutral` params)

A trial's directory is a directory object of the store; its record
(`trials/<key[:2]>/<key[2:]>.json`) names that object, the trial's summary,
what it cost, its base and identity (so a miss can be explained) and the files
its code opened by path (`TrialReads`: checked before it is served, as a stage
record's discovered inputs are), and is written (atomically) only after the
object is stored, so a kill leaves either a whole trial or none. A record whose
object is missing or corrupted, or whose files changed, is recomputed, never
served; a forced stage (`--force`) recomputes every trial it asks for. The
`trial` fault point fires right after a trial is stored.
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Protocol

from pipeline.cache.hashing import canonical_json, jsonable, sha256_bytes
from pipeline.cache.objects import BadObject, ObjectStore
from pipeline.cache.records import write_json_atomic
from pipeline.faults import fault
from pipeline.stage import Produce, Trial

TRIALS = "trials"


def trial_base(components: Mapping[str, Any], neutral: tuple[str, ...]) -> str:
    """What every trial of a stage shares: its key's components with the params that decide which trials run
    (not what one computes) left out."""
    comp = dict(components)
    comp["params"] = {k: v for k, v in dict(comp.get("params") or {}).items() if k not in neutral}
    return sha256_bytes(canonical_json({"trial_of": comp}).encode())


def trial_key(base: str, identity: Mapping[str, Any]) -> str:
    return sha256_bytes(canonical_json({"base": base, "identity": dict(identity)}).encode())


class TrialReads(Protocol):
    """The files a trial's code opens by path (the worker's discovered-input recorder)."""

    def watch(self, produce: Produce, directory: Path) -> tuple[Mapping[str, Any] | None, dict[str, str]]:
        """`produce(directory)`'s summary, and `{label: digest}` of what it read."""
        ...

    def changes(self, reads: Mapping[str, str]) -> list[str]:
        """Why those reads no longer hold here (empty: they all hold)."""
        ...


class TrialCache:
    """The `Trials` a worker hands a stage: trials kept in a local store (the cache root here; a cluster
    node's own directory there), materialized under `scratch` for the stage to read."""

    def __init__(
        self,
        objects: ObjectStore,
        root: Path,
        base: str,
        stage: str,
        scratch: Path,
        reads: TrialReads | None = None,
        fresh: bool = False,
    ):
        """`fresh`: compute every trial (a forced stage), storing each as usual."""
        self.objects, self.records = objects, root / TRIALS
        self.base, self.stage, self.scratch = base, stage, scratch
        self.reads, self.fresh = reads, fresh
        self.done: list[Trial] = []

    def _record_path(self, key: str) -> Path:
        return self.records / key[:2] / f"{key[2:]}.json"

    def run(self, label: str, identity: Mapping[str, Any], produce: Produce) -> Trial:
        key = trial_key(self.base, identity)
        trial = (None if self.fresh else self._cached(label, key)) or self._produce(label, key, identity, produce)
        self.done.append(trial)
        return trial

    def _cached(self, label: str, key: str) -> Trial | None:
        path = self._record_path(key)
        try:
            record = json.loads(path.read_text())
            digest, summary, seconds = record["digest"], dict(record["summary"]), float(record["seconds"])
            reads = dict(record.get("reads") or {})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"[pipeline] trial {label}: record {path} unreadable ({exc}); computing it again", flush=True)
            return None
        changed = self.reads.changes(reads) if self.reads is not None and reads else []
        if changed:
            print(f"[pipeline] trial {label}: {'; '.join(changed)}; computing it again", flush=True)
            return None
        problem = self.objects.problem(digest, True)
        if problem is not None:
            print(f"[pipeline] trial {label}: its stored result is {problem}; computing it again", flush=True)
            return None
        dest = self.scratch / key[:16]
        shutil.rmtree(dest, ignore_errors=True)
        try:
            self.objects.materialize(digest, True, dest, link=True)
        except (BadObject, OSError) as exc:
            print(f"[pipeline] trial {label}: its stored result is unusable ({exc}); computing it again", flush=True)
            return None
        return Trial(label, key, dest, summary, True, seconds)

    def _produce(self, label: str, key: str, identity: Mapping[str, Any], produce: Produce) -> Trial:
        self.scratch.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=self.scratch, prefix="making-"))
        started = time.perf_counter()
        made, reads = self.reads.watch(produce, work) if self.reads is not None else (produce(work), {})
        summary = jsonable(dict(made or {}))
        seconds = time.perf_counter() - started
        digest = self.objects.put(work, True)  # consumes the files
        self.objects.flush()
        write_json_atomic(
            self._record_path(key),
            {
                "key": key,
                "label": label,
                "stage": self.stage,
                "base": self.base,
                "identity": jsonable(dict(identity)),
                "reads": reads,
                "digest": digest,
                "summary": summary,
                "seconds": round(seconds, 3),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
        )
        fault("trial", self.stage)
        shutil.rmtree(work, ignore_errors=True)
        dest = self.scratch / key[:16]
        shutil.rmtree(dest, ignore_errors=True)
        self.objects.materialize(digest, True, dest, link=True)
        return Trial(label, key, dest, summary, False, seconds)


def list_trials(records: Path) -> list[tuple[str, Path]]:
    """(object digest, record path) of every readable trial record under `records`."""
    found = []
    for path in sorted(records.glob("*/*.json")) if records.is_dir() else []:
        try:
            found.append((str(json.loads(path.read_text())["digest"]), path))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found
