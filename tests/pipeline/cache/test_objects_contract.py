"""The Objects protocol (has / fetch / put / size), held by the local store and by a remote one alike:
a task that stores its outputs and fetches its inputs through it need not know which it has.

The protocol is pipeline/cache/objects.py's, so the test lives with the cache's tests; every test runs against
both stores, the local ObjectStore and pipeline/remote/objects.py's RemoteObjects."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from pipeline.cache.hashing import DigestMemo
from pipeline.cache.objects import BadObject, Objects, ObjectStore
from pipeline.remote.objects import RemoteObjects
from pipeline.remote.store import Remote


@pytest.fixture(params=["local", "remote"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> Objects:
    if request.param == "local":
        return ObjectStore(tmp_path / "cache", DigestMemo(tmp_path / "cache" / "state.db"))
    pytest.importorskip("fsspec")
    return RemoteObjects(Remote((tmp_path / "remote").as_uri()))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_file_round_trips_by_its_sha256(objects: Objects, tmp_path: Path) -> None:
    src = tmp_path / "work" / "model.onnx"
    src.parent.mkdir()
    src.write_bytes(b"weights")
    digest = objects.put(src, is_dir=False)
    assert digest == hashlib.sha256(b"weights").hexdigest() and not src.exists()
    assert objects.has(digest, False) and objects.size(digest, False) == 7
    dest = tmp_path / "task" / "in" / "model.onnx"
    objects.fetch(digest, False, dest)
    assert dest.read_bytes() == b"weights"
    assert stat.S_IMODE(dest.stat().st_mode) & 0o222 == 0, "a fetched input is read-only"


def test_a_directory_round_trips_with_its_manifest(objects: Objects, tmp_path: Path) -> None:
    src = tmp_path / "work" / "ir"
    (src / "sub").mkdir(parents=True)
    (src / "model.xml").write_text("<xml/>")
    (src / "sub" / "model.bin").write_bytes(b"\0" * 100)
    want = _tree(src)
    digest = objects.put(src, is_dir=True)
    assert not src.exists() and objects.has(digest, True) and objects.size(digest, True) == 106
    dest = tmp_path / "task" / "in" / "ir"
    objects.fetch(digest, True, dest)
    assert _tree(dest) == want


def test_what_was_never_stored_is_not_there(objects: Objects) -> None:
    assert not objects.has("ab" * 32, False) and not objects.has("ab" * 32, True)


def test_a_remote_never_places_bytes_that_fail_their_digest(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    remote = RemoteObjects(Remote((tmp_path / "remote").as_uri()))
    src = tmp_path / "f"
    src.write_bytes(b"good bytes")
    digest = remote.put(src, False)
    stored = tmp_path / "remote" / "objects" / digest[:2] / digest[2:]
    os.chmod(stored, 0o644)
    stored.write_bytes(b"evil bytes")
    dest = tmp_path / "in" / "f"
    with pytest.raises(BadObject, match="corrupted"):
        remote.fetch(digest, False, dest)
    assert not dest.exists() and not list(dest.parent.iterdir())


def test_a_remote_manifest_that_leaves_its_directory_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    remote = RemoteObjects(Remote((tmp_path / "remote").as_uri()))
    f = tmp_path / "f"
    f.write_bytes(b"x")
    inner = remote.put(f, False)
    data = json.dumps([{"path": "../escape", "digest": inner}]).encode()
    m = tmp_path / "m"
    m.write_bytes(data)
    digest = remote.put(m, False)
    with pytest.raises(BadObject, match="unsafe path"):
        remote.fetch(digest, True, tmp_path / "in" / "dir")
    assert not (tmp_path / "in" / "escape").exists()
    assert not remote.has(digest, True)
