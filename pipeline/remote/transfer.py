"""Moving objects between two stores, the one way bytes move (as dvc-data's `transfer`): a pull (remote ->
local cache), a push or a write-through upload (local cache -> remote), and a cluster task's inputs.

Each object is read through its source's `readable` (a download is checked against its digest and size
there, once, for every caller) and added to the destination by rename, so a store never holds bytes that
are not what their name says, and an interrupted transfer leaves nothing half-written. A directory moves
as its manifest first, then the files the manifest lists; the manifest is read where it is local, and a
file it lists that the record's object list omits is refused (a record names everything it needs).
"""

from __future__ import annotations

from typing import Iterable, Mapping

from pipeline.cache.objects import BadObject, ObjectDb, UnsafeManifest, safe_entries
from pipeline.cache.records import OutputRecord


def transfer(
    outputs: Iterable[OutputRecord], src: ObjectDb, dst: ObjectDb, sizes: Mapping[str, int] | None = None
) -> int:
    """Copy every object `outputs` name from `src` to `dst` (what `dst` holds already is skipped); return
    the bytes copied. `sizes` (digest -> size, a remote record's object list) is what each object must
    measure, and every object it must name. Raises BadObject (the object that failed is not kept)."""
    copied = 0
    for out in outputs:
        copied += _copy(out.digest, src, dst, sizes)
        if out.is_dir:
            for entry in _entries(out.digest, src, dst):
                if sizes is not None and entry["digest"] not in sizes:
                    raise BadObject(f"manifest {out.digest[:12]} lists {entry['path']}, which the record omits")
                copied += _copy(entry["digest"], src, dst, sizes)
    return copied


def named_objects(outputs: Iterable[OutputRecord], db: ObjectDb) -> dict[str, int]:
    """Every object `outputs` name in `db` (directory manifests and the files they list), with its size: the
    object list a remote record carries. FileNotFoundError or BadObject when one is not there."""
    objects: dict[str, int] = {}
    for out in outputs:
        objects[out.digest] = db.size_of(out.digest)
        if out.is_dir:
            for entry in db.manifest(out.digest):
                objects[entry["digest"]] = db.size_of(entry["digest"])
    return objects


def _copy(digest: str, src: ObjectDb, dst: ObjectDb, sizes: Mapping[str, int] | None) -> int:
    if sizes is not None:
        if digest not in sizes:
            raise BadObject(f"object {digest[:12]} is not in the record's object list")
        size: int | None = sizes[digest]
    else:
        try:
            size = src.size_of(digest)  # what the destination must hold: a short upload is sent again
        except FileNotFoundError:
            size = None  # only the destination may have it (a cluster's input that stayed on the remote)
    if dst.holds(digest, size):
        return 0
    if size is None and sizes is None:
        raise BadObject(f"object {digest[:12]} is in neither store")
    with src.readable(digest, size, near=dst.staging()) as path:
        moved = path.stat().st_size
        dst.add(path, digest)
    return moved


def _entries(digest: str, src: ObjectDb, dst: ObjectDb) -> list[dict[str, str]]:
    """A moved directory's entries, read where it is cheap (the local side, else the other), and checked:
    no path may leave its directory, whichever store it came from."""
    first, second = (dst, src) if dst.is_local else (src, dst)
    try:
        entries = first.manifest(digest)
    except BadObject:
        entries = second.manifest(digest)
    try:
        return safe_entries(entries, digest)
    except UnsafeManifest as exc:
        raise BadObject(str(exc)) from None
