"""pipeline/remote/results.py called directly: the one owner of results whose objects are on the remote. A
result is taken (objects checked, record adopted under the asking stage's name), held until a stage here reads
it, or found undeliverable, which is written once: the remote's record is rejected for the rest of the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.cache import Cache
from pipeline.cache.records import OutputRecord, StageRecord

pytest.importorskip("fsspec")

from pipeline.remote.results import RemoteResults, Undeliverable  # noqa: E402 - after the importorskip
from pipeline.remote.store import Remote  # noqa: E402
from pipeline.remote.sync import push  # noqa: E402

KEY = "ab" * 32


def _built(cache: Cache, tmp_path: Path, key: str = KEY, text: bytes = b"engine") -> StageRecord:
    src = tmp_path / f"out-{key[:4]}.bin"
    src.write_bytes(text)
    digest = cache.objects.put(src, False)
    out = OutputRecord(digest, False, len(text), "engine.bin")
    record = StageRecord(key, "build", "toy.build", {"kind": "toy.build"}, {"model": out}, provenance={"run": "r1"})
    cache.records.put(record)
    return record


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote((tmp_path / "remote").as_uri())


def test_a_taken_result_is_recorded_as_pulled_under_the_asking_stages_name(remote: Remote, tmp_path: Path) -> None:
    built = _built(Cache(tmp_path / "builder"), tmp_path)
    push(remote, built, Cache(tmp_path / "builder").objects, sign=False)
    here = Cache(tmp_path / "here")
    found = remote.lookup(KEY)
    assert found is not None
    taken = RemoteResults(remote, here, "other_recipe").take("engine", found)
    assert taken.downloaded == len(b"engine")
    assert taken.record.provenance["origin"] == "pulled" and taken.record.provenance["remote"] == remote.url
    assert here.records.latest("other_recipe", "engine") == taken.record  # the asking name, not "build"
    assert here.objects.verify(built.outputs["model"].digest, False)


def test_a_result_built_on_a_cluster_node_is_not_marked_pulled(remote: Remote, tmp_path: Path) -> None:
    built = _built(Cache(tmp_path / "builder"), tmp_path)
    push(remote, built, Cache(tmp_path / "builder").objects, sign=False)
    found = remote.lookup(KEY)
    assert found is not None
    record = RemoteResults(remote, Cache(tmp_path / "here"), "r").settle("build", found, here=True, pulled=False)
    assert "origin" not in record.provenance


def test_a_corrupted_result_is_undeliverable_rejected_for_the_run_and_nothing_is_recorded(
    remote: Remote, tmp_path: Path
) -> None:
    builder = Cache(tmp_path / "builder")
    built = _built(builder, tmp_path)
    push(remote, built, builder.objects, sign=False)
    found = remote.lookup(KEY)
    assert found is not None
    obj = Path(remote.object_path(built.outputs["model"].digest).removeprefix("file://"))
    os.chmod(obj, 0o644)
    obj.write_bytes(b"enGine")
    here = Cache(tmp_path / "here")
    results = RemoteResults(remote, here, "r")
    with pytest.warns(UserWarning, match="cannot be served"):
        with pytest.raises(Undeliverable, match="build: corrupted on the remote") as caught:
            results.take("build", found)
    assert caught.value.corrupted
    assert here.records.latest("r", "build") is None and here.records.get(KEY) is None
    assert remote.lookup(KEY) is None, "a rejected record is not served again in this run"


def test_a_held_result_comes_down_when_a_stage_here_reads_it_and_an_undeliverable_one_is_named(
    remote: Remote, tmp_path: Path
) -> None:
    builder = Cache(tmp_path / "builder")
    good, bad = _built(builder, tmp_path), _built(builder, tmp_path, key="cd" * 32, text=b"other")
    bad = StageRecord(bad.key, "quant", bad.kind, bad.components, bad.outputs)
    for record in (good, bad):
        push(remote, record, builder.objects, sign=False)
    here = Cache(tmp_path / "here")
    results = RemoteResults(remote, here, "r")
    found_good, found_bad = remote.lookup(good.key), remote.lookup(bad.key)
    assert found_good is not None and found_bad is not None
    assert results.settle("build", found_good, here=False) == good  # held: its record only
    results.settle("quant", found_bad, here=False)
    assert "build" in results and here.records.latest("r", "build") is None
    Path(remote.object_path(bad.outputs["model"].digest).removeprefix("file://")).unlink()
    got, undelivered = results.deliver(["build", "unrelated"])
    assert list(got) == ["build"] and undelivered is None and "build" not in results
    assert here.records.latest("r", "build") is not None
    with pytest.warns(UserWarning):
        assert results.deliver(["quant"]) == ({}, "quant")
    assert results.deliver(["quant"]) == ({}, "quant"), "asked again, it is still undeliverable"
    results.release("quant")
    assert "quant" not in results
