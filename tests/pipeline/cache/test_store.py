"""cache.objects.ObjectStore called directly: objects named by content, read-only, verified; directory manifests."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from pipeline.cache.hashing import DigestMemo
from pipeline.cache.objects import ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    root = tmp_path / "cache"
    return ObjectStore(root, DigestMemo(root / "state.db"))


def _file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _writable(path: Path) -> None:
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_a_file_is_stored_under_its_sha256_read_only_and_consumed(store: ObjectStore, tmp_path: Path) -> None:
    src = _file(tmp_path / "work" / "model.onnx", "weights")
    digest = store.put_file(src)
    assert digest == hashlib.sha256(b"weights").hexdigest()
    obj = store.path(digest)
    assert obj == store.root / "objects" / digest[:2] / digest[2:]
    assert obj.read_text() == "weights" and not src.exists()
    assert stat.S_IMODE(obj.stat().st_mode) & 0o222 == 0  # nobody can write it
    assert store.verify(digest, is_dir=False) and store.size(digest, False) == len("weights")


def test_the_same_bytes_are_stored_once(store: ObjectStore, tmp_path: Path) -> None:
    first = store.put_file(_file(tmp_path / "a", "same"))
    second = store.put_bytes(b"same")
    assert first == second and store.all_objects() == [first]
    assert not list((store.root / "tmp").iterdir())  # put_bytes' temp file was consumed


def test_a_missing_object_does_not_verify(store: ObjectStore) -> None:
    assert not store.verify("ab" * 32, is_dir=False)
    assert not store.verify("ab" * 32, is_dir=True)


def test_a_changed_object_does_not_verify(store: ObjectStore) -> None:
    digest = store.put_bytes(b"original")
    obj = store.path(digest)
    _writable(obj)
    obj.write_bytes(b"tampered, longer")  # size and mtime change: the stat memo notices
    assert not store.verify(digest, is_dir=False)


def test_a_same_size_edit_behind_the_memo_is_found_by_rehashing(store: ObjectStore) -> None:
    """A bit flip that keeps size and mtime fools the (inode, mtime, size) memo; `verify --rehash` does not."""
    digest = store.put_bytes(b"original")
    obj = store.path(digest)
    assert store.verify(digest, is_dir=False)
    st = obj.stat()
    _writable(obj)
    obj.write_bytes(b"origiNAL")
    os.utime(obj, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not store.verify(digest, is_dir=False, rehash=True)
    assert not store.verify_file(digest, rehash=True)


def test_a_directory_is_its_files_plus_a_sorted_manifest(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "out" / "ir"
    _file(src / "model.xml", "xml")
    _file(src / "sub" / "model.bin", "bin")
    _file(src / "a.txt", "a")
    digest = store.put_dir(src)
    entries = store.manifest(digest)
    assert [e["path"] for e in entries] == ["a.txt", "model.xml", "sub/model.bin"]
    assert {e["path"]: e["digest"] for e in entries}["sub/model.bin"] == hashlib.sha256(b"bin").hexdigest()
    assert json.loads(store.path(digest).read_bytes()) == entries
    assert store.verify(digest, is_dir=True)
    assert store.size(digest, is_dir=True) == len("xml") + len("bin") + len("a")


def test_a_directory_digest_does_not_depend_on_creation_order(store: ObjectStore, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for name in ("b.txt", "a.txt", "z/c.txt"):
        _file(one / name, name)
    for name in ("z/c.txt", "a.txt", "b.txt"):
        _file(two / name, name)
    assert store.put_dir(one) == store.put_dir(two)


def test_a_directory_with_a_damaged_member_does_not_verify(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "d"
    _file(src / "x.txt", "x")
    _file(src / "y.txt", "y")
    digest = store.put_dir(src)
    member = store.path(store.manifest(digest)[1]["digest"])
    _writable(member)
    member.write_text("not y")
    assert store.verify(digest, is_dir=False)  # the manifest itself is intact...
    assert not store.verify(digest, is_dir=True)  # ...but what it lists is not
    member.unlink()
    assert not store.verify(digest, is_dir=True)


def test_a_manifest_that_is_not_json_does_not_verify_as_a_directory(store: ObjectStore) -> None:
    digest = store.put_bytes(b"not a manifest")
    assert store.verify(digest, is_dir=False) and not store.verify(digest, is_dir=True)


def test_materialized_copies_are_read_only_and_links_share_the_object(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "d"
    _file(src / "x.txt", "x")
    _file(src / "sub" / "y.txt", "y")
    digest = store.put_dir(src)
    copy, linked = tmp_path / "view", tmp_path / "input"
    store.materialize(digest, True, copy, link=False)
    store.materialize(digest, True, linked, link=True)
    for root in (copy, linked):
        assert (root / "x.txt").read_text() == "x" and (root / "sub" / "y.txt").read_text() == "y"
    y = store.path({e["path"]: e["digest"] for e in store.manifest(digest)}["sub/y.txt"])
    assert (linked / "sub" / "y.txt").stat().st_ino == y.stat().st_ino
    assert (copy / "sub" / "y.txt").stat().st_ino != y.stat().st_ino
    assert stat.S_IMODE((copy / "x.txt").stat().st_mode) & 0o222 == 0  # editing a view cannot reach the object
    assert not [p for p in copy.rglob("*") if ".tmp" in p.name]


def test_remove_deletes_the_object_and_reports_its_size(store: ObjectStore) -> None:
    digest = store.put_bytes(b"12345")
    assert store.remove(digest) == 5
    assert store.all_objects() == [] and not store.verify(digest, is_dir=False)


def test_putting_the_same_bytes_again_repairs_a_damaged_object(store: ObjectStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"good bytes")
    obj = store.path(digest)
    _writable(obj)
    obj.write_bytes(b"bad")
    assert store.put_file(_file(tmp_path / "again", "good bytes")) == digest
    assert obj.read_bytes() == b"good bytes" and store.verify(digest, is_dir=False)
    assert stat.S_IMODE(obj.stat().st_mode) & 0o222 == 0


def test_a_directory_output_may_name_a_file_with_a_backslash_here(store: ObjectStore, tmp_path: Path) -> None:
    """Only a manifest from elsewhere has its paths checked (pipeline/remote/transfer.py); a local output
    with a legal Linux file name stores and verifies."""
    src = tmp_path / "out"
    src.mkdir()
    (src / "a\\b").write_text("x")
    digest = store.put(src, is_dir=True)
    assert store.has(digest, True) and store.size(digest, True) == 1
    assert [e["path"] for e in store.manifest(digest)] == ["a\\b"]
