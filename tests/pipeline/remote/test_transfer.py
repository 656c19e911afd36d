"""pipeline/remote/transfer.py called directly: the one way bytes move between two stores (the local cache and
a remote on file://), each object checked on the way, what the destination holds skipped."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from pipeline.cache import Cache
from pipeline.cache.objects import BadObject
from pipeline.cache.records import OutputRecord
from pipeline.remote.transfer import named_objects, transfer

pytest.importorskip("fsspec")

from pipeline.remote.objects import RemoteObjects  # noqa: E402 - after the importorskip
from pipeline.remote.store import Remote  # noqa: E402


def _stored(cache: Cache, tmp_path: Path) -> tuple[OutputRecord, OutputRecord]:
    """A file output and a directory output, in the local cache."""
    work = tmp_path / "work"
    (work / "ir" / "sub").mkdir(parents=True)
    (work / "model.onnx").write_bytes(b"weights" * 100)
    (work / "ir" / "model.xml").write_text("<xml/>")
    (work / "ir" / "sub" / "model.bin").write_bytes(b"\1" * 64)
    f = cache.objects.put(work / "model.onnx", False)
    d = cache.objects.put(work / "ir", True)
    return OutputRecord(f, False, 700, "model.onnx"), OutputRecord(d, True, 70, "ir")


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Cache, RemoteObjects, Cache]:
    return Cache(tmp_path / "here"), RemoteObjects(Remote((tmp_path / "remote").as_uri())), Cache(tmp_path / "there")


def test_outputs_go_up_and_come_down_intact_and_a_second_transfer_moves_nothing(stores, tmp_path: Path) -> None:
    here, remote, there = stores
    outputs = _stored(here, tmp_path)
    sent = transfer(outputs, here.objects, remote)
    assert sent == 700 + len(here.objects.path(outputs[1].digest).read_bytes()) + 6 + 64
    assert transfer(outputs, here.objects, remote) == 0  # the remote holds every object at its size
    sizes = named_objects(outputs, remote)
    assert sizes == named_objects(outputs, here.objects) and len(sizes) == 4  # a file, a manifest and its two files
    assert transfer(outputs, remote, there.objects, sizes=sizes) == sent
    for out in outputs:
        assert there.objects.verify(out.digest, out.is_dir, rehash=True)
    mode = there.objects.path(outputs[0].digest).stat().st_mode
    assert stat.S_IMODE(mode) & 0o222 == 0, "an object that came down is read-only, as one stored here"
    assert transfer(outputs, remote, there.objects, sizes=sizes) == 0
    assert remote.remote.transfer.objects_up == 4 and remote.remote.transfer.objects_down == 4


def _corrupt(remote: RemoteObjects, digest: str, data: bytes) -> None:
    path = Path(remote.remote.object_path(digest).removeprefix("file://"))
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_a_corrupted_or_short_object_is_refused_and_nothing_of_it_is_kept(stores, tmp_path: Path) -> None:
    here, remote, there = stores
    outputs = _stored(here, tmp_path)
    transfer(outputs, here.objects, remote)
    sizes = named_objects(outputs, remote)
    _corrupt(remote, outputs[0].digest, b"weightz" * 100)
    with pytest.raises(BadObject, match=rf"object {outputs[0].digest[:12]} from the remote is corrupted"):
        transfer(outputs[:1], remote, there.objects, sizes=sizes)
    assert not there.objects.path(outputs[0].digest).exists()
    assert not list((there.root / "tmp").glob("*")), "no temporary file is left behind"
    _corrupt(remote, outputs[0].digest, b"weights" * 99)  # short: an upload killed halfway
    with pytest.raises(BadObject, match=r"\(693 bytes, expected 700\)"):
        transfer(outputs[:1], remote, there.objects, sizes=sizes)
    assert not there.objects.path(outputs[0].digest).exists()


def test_a_manifest_that_lists_a_file_the_record_omits_is_refused(stores, tmp_path: Path) -> None:
    here, remote, there = stores
    outputs = _stored(here, tmp_path)
    transfer(outputs, here.objects, remote)
    sizes = named_objects(outputs[1:], remote)
    listed = here.objects.manifest(outputs[1].digest)
    del sizes[listed[0]["digest"]]
    with pytest.raises(BadObject, match=rf"lists {listed[0]['path']}, which the record omits"):
        transfer(outputs[1:], remote, there.objects, sizes=sizes)


def test_a_manifest_with_an_unsafe_path_is_refused_before_any_file_it_lists_is_written(stores, tmp_path: Path) -> None:
    here, remote, there = stores
    manifest = json.dumps([{"path": "../../escape", "digest": hashlib.sha256(b"x").hexdigest()}]).encode()
    digest = hashlib.sha256(manifest).hexdigest()
    src = tmp_path / "m"
    src.write_bytes(manifest)
    remote.add(src, digest)
    out = OutputRecord(digest, True, 1, "ir")
    with pytest.raises(BadObject, match="unsafe path"):
        transfer([out], remote, there.objects, sizes={digest: len(manifest)})
    assert not (tmp_path / "escape").exists()


def test_a_corrupted_local_object_is_never_sent(stores, tmp_path: Path) -> None:
    here, remote, _ = stores
    outputs = _stored(here, tmp_path)
    path = here.objects.path(outputs[0].digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"rotten" * 100)
    with pytest.raises(BadObject, match="corrupted in the local cache"):
        transfer(outputs[:1], here.objects, remote)
    assert not remote.holds(outputs[0].digest, None)


def test_what_only_the_destination_holds_needs_nothing_of_the_source(stores, tmp_path: Path) -> None:
    """A cluster task's input that stayed on the remote (pulled by record only): nothing to send, no error;
    an object in neither store is refused by name."""
    here, remote, there = stores
    outputs = _stored(here, tmp_path)
    transfer(outputs, here.objects, remote)
    assert transfer(outputs, there.objects, remote) == 0  # `there` holds none of them
    missing = OutputRecord("0" * 64, False, 1, "gone.bin")
    with pytest.raises(BadObject, match="object 000000000000 is in neither store"):
        transfer([missing], there.objects, remote)


def test_a_download_is_staged_in_the_destination_cache_and_nothing_is_left_there(stores, tmp_path: Path) -> None:
    here, remote, there = stores
    outputs = _stored(here, tmp_path)
    transfer(outputs, here.objects, remote)
    seen: list[Path] = []
    real_add = there.objects.add

    def add(src: Path, digest: str) -> None:
        seen.append(src.parent)
        real_add(src, digest)

    there.objects.add = add  # type: ignore[method-assign]
    transfer(outputs, remote, there.objects, sizes=named_objects(outputs, remote))
    assert seen and set(seen) == {there.root / "tmp"}, "downloaded beside the store: added by rename"
    assert not list((there.root / "tmp").iterdir())
