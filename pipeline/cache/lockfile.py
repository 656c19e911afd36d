"""`<recipe>.lock`: stage -> key, output digests and toolchain, like dvc.lock.

Deterministic (sorted, no timestamps) so it diffs cleanly in review, and
rewritten only when its content changes. CI compares it with fresh keys
(`pipeline status`) to ask "is everything up to date?" without building.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from pipeline.cache.flock import KeyLock
from pipeline.cache.records import StageRecord

HEADER = "# Written by `pipeline run`; do not edit. Maps each stage to its key and outputs.\n"


def lock_path(recipe_path: Path) -> Path:
    return recipe_path.with_suffix(".lock")


def read_lock(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except (OSError, yaml.YAMLError):
        return {}
    stages = data.get("stages") if isinstance(data, dict) else None
    return stages if isinstance(stages, dict) else {}


def entry(record: StageRecord) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "key": record.key,
        "outputs": {
            name: {"path": o.path, "digest": o.digest, "size": o.size, **({"dir": True} if o.is_dir else {})}
            for name, o in sorted(record.outputs.items())
        },
        "toolchain": dict(sorted(record.components.get("toolchain", {}).items())),
        # what its code opened by path: a review sees the weights and tables a stage read
        **({"discovered": dict(sorted(record.discovered.items()))} if record.discovered else {}),
    }


def write_lock(path: Path, stages: dict[str, dict[str, Any]], order: list[str]) -> bool:
    """Write the lock (stages in recipe order); return whether the file changed."""
    ordered = {name: stages[name] for name in order if name in stages}
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the C emitter: 10x faster on a big lock
    text = HEADER + yaml.dump(
        {"schema": 1, "stages": ordered}, Dumper=dumper, sort_keys=False, default_flow_style=False, width=120
    )
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def record_run(recipe_path: Path, order: list[str], known: dict[str, StageRecord], locks: Path, index: Path) -> None:
    """Merge a run's records into `<recipe>.lock`, under a file lock in `locks` (concurrent runs of one
    recipe each add their stages; stages no longer in the recipe leave), and list the lock file in
    `index` (the lock files this cache knows: roots for gc)."""
    from pipeline.cache.hashing import sha256_bytes

    path = lock_path(recipe_path)
    with KeyLock(locks / "lockfiles" / f"{sha256_bytes(str(path.resolve()).encode())[:32]}.lock"):
        stages = read_lock(path)
        for name, record in known.items():
            stages[name] = entry(record)
        for name in list(stages):
            if name not in order:
                del stages[name]
        write_lock(path, stages, order)
    line = str(path.resolve())
    try:
        listed = index.read_text().splitlines()
    except OSError:
        listed = []
    if line not in listed:
        index.parent.mkdir(parents=True, exist_ok=True)
        with open(index, "a") as f:
            f.write(line + "\n")
