"""Stable, read-only views of the latest outputs: artifacts/<recipe>/<stage>/<file>.

Views are copies, not links: a user editing a view can never corrupt an object.
A view already holding the right bytes (checked through the stat memo) is left alone.
One process at a time updates a view (a file lock per view), so concurrent runs on
one cache never trip over each other's half-made copies.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipeline.cache import Cache
from pipeline.cache.flock import KeyLock
from pipeline.cache.objects import BadObject
from pipeline.cache.records import StageRecord


def update_view(cache: Cache, recipe: str, stage: str, record: StageRecord) -> dict[str, str]:
    """Make the view of `recipe`'s `stage` match `record`; return output name -> view path.

    The view is named by the stage that asks, not by `record.stage`: a result first built by another
    recipe, or under a stage's old name, is served here under this recipe's names."""
    with KeyLock(cache.locks / "views" / recipe / f"{stage}.lock"):
        return _update(cache, cache.view_dir(recipe, stage), record)


def view_if_local(cache: Cache, recipe: str, stage: str, record: StageRecord) -> dict[str, str]:
    """The stage's view when its objects are here; a view of an older build is removed, never left stale
    (a stage whose outputs stayed on a remote cache)."""
    if all(cache.objects.has(o.digest, o.is_dir) for o in record.outputs.values()):
        return update_view(cache, recipe, stage, record)
    remove_view(cache.view_dir(recipe, stage))
    return {}


def _update(cache: Cache, view: Path, record: StageRecord) -> dict[str, str]:
    paths = {}
    wanted = {out.path for out in record.outputs.values()}
    if view.is_dir():
        for entry in view.iterdir():
            if entry.name not in wanted:
                remove_view(entry)
    for name, out in record.outputs.items():
        dest = view / out.path
        paths[name] = str(dest)
        if _matches(cache, dest, out.digest, out.is_dir):
            continue
        remove_view(dest)
        tmp = view / f".{out.path}.tmp{os.getpid()}"
        remove_view(tmp)
        cache.objects.materialize(out.digest, out.is_dir, tmp, link=False)
        os.replace(tmp, dest)
    return paths


def _matches(cache: Cache, dest: Path, digest: str, is_dir: bool) -> bool:
    try:
        if not is_dir:
            return dest.is_file() and not dest.is_symlink() and cache.memo.file_digest(dest) == digest
        entries = cache.objects.manifest(digest)
        files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
        return files == [e["path"] for e in entries] and all(
            cache.memo.file_digest(dest / e["path"]) == e["digest"] for e in entries
        )
    except (OSError, BadObject):
        return False


def remove_view(p: Path) -> None:
    """Delete a view file or folder (read-only copies: write permission restored first)."""
    if p.is_dir() and not p.is_symlink():
        for sub in p.rglob("*"):
            if sub.is_dir():
                os.chmod(sub, 0o755)
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
