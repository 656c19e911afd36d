"""pipeline.cache.records called directly: records by key, refs by (recipe, stage); damage is a miss with a warning."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from pipeline.cache.records import OutputRecord, RecordStore, StageRecord, write_json_atomic

KEY = "a1" * 32
OTHER = "b2" * 32


def _record(key: str = KEY, stage: str = "export") -> StageRecord:
    return StageRecord(
        key=key,
        stage=stage,
        kind="export.onnx",
        components={"kind": "export.onnx", "params": {"opset": 20}, "toolchain": {"torch": "2.5"}},
        outputs={
            "model": OutputRecord("c3" * 32, False, 123, "model.onnx"),
            "ir": OutputRecord("d4" * 32, True, 456, "ir"),
        },
        summary={"nodes": 12},
        seconds=1.5,
        created="2026-01-01T00:00:00+00:00",
    )


@pytest.fixture
def records(tmp_path: Path) -> RecordStore:
    return RecordStore(tmp_path / "cache")


def test_a_record_reads_back_as_written(records: RecordStore) -> None:
    records.put(_record())
    assert records.get(KEY) == _record()
    assert (records.records / KEY[:2] / f"{KEY[2:]}.json").is_file()
    assert records.all() == [_record()]


def test_writes_are_atomic_and_leave_no_temp_files(records: RecordStore, tmp_path: Path) -> None:
    records.put(_record())
    records.put(_record())  # rewriting replaces, never appends or leaves a temp file beside it
    assert [p.name for p in (records.records / KEY[:2]).iterdir()] == [f"{KEY[2:]}.json"]
    target = tmp_path / "x" / "data.json"
    write_json_atomic(target, {"b": 1, "a": 2})
    assert target.read_text() == '{\n "a": 2,\n "b": 1\n}\n'  # sorted keys: diffs stay small


def test_an_unknown_key_is_a_miss(records: RecordStore) -> None:
    assert records.get(KEY) is None


@pytest.mark.parametrize("key", ["", "../../etc/passwd", "XYZ", "ab", 12, None])
def test_a_key_that_is_not_hex_is_a_miss_not_a_crash(records: RecordStore, key: object) -> None:
    assert records.get(key) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"key": "x"}', ""])
def test_a_damaged_record_is_a_miss_with_one_warning(records: RecordStore, damage: str) -> None:
    records.put(_record())
    path = records.records / KEY[:2] / f"{KEY[2:]}.json"
    path.write_text(damage)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # so a second warning would show, were there one
        assert records.get(KEY) is None
        assert records.get(KEY) is None  # asked again: not warned again
    assert [str(w.message) for w in caught] == [str(caught[0].message)]
    assert str(path) in str(caught[0].message) and "it will be rebuilt" in str(caught[0].message)
    assert records.all() == []


def test_a_record_holding_another_key_is_a_miss(records: RecordStore) -> None:
    records.put(_record(OTHER))
    (records.records / OTHER[:2] / f"{OTHER[2:]}.json").rename(records.records / OTHER[:2] / "moved.json")
    path = records.records / KEY[:2] / f"{KEY[2:]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_record(OTHER).to_json()))
    with pytest.warns(UserWarning, match=f"it holds key {OTHER[:12]}"):
        assert records.get(KEY) is None


def test_a_ref_names_the_latest_key_of_a_recipe_stage(records: RecordStore) -> None:
    records.put(_record(KEY))
    records.put(_record(OTHER))
    assert records.latest("toy", "export") is None
    records.set_latest("toy", "export", KEY)
    assert records.latest("toy", "export") == _record(KEY)
    records.set_latest("toy", "export", OTHER)
    assert records.latest("toy", "export").key == OTHER
    assert records.all_latest_keys() == {OTHER}


def test_setting_the_same_ref_again_does_not_rewrite_it(records: RecordStore) -> None:
    records.set_latest("toy", "export", KEY)
    ref = records.refs / "toy" / "export.json"
    before = ref.stat().st_mtime_ns, ref.stat().st_ino
    records.set_latest("toy", "export", KEY)
    assert (ref.stat().st_mtime_ns, ref.stat().st_ino) == before


@pytest.mark.parametrize("damage", ["{", '{"key": 5}', '{"key": "not hex"}', '{"other": 1}', "null"])
def test_a_damaged_ref_is_a_missing_record(records: RecordStore, damage: str) -> None:
    records.put(_record())
    ref = records.refs / "toy" / "export.json"
    ref.parent.mkdir(parents=True)
    ref.write_text(damage)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged ref is quietly no record
        assert records.latest("toy", "export") is None
    records.set_latest("toy", "export", KEY)  # and is repaired by the next build
    assert records.latest("toy", "export") == _record()


def test_variants_are_refs_of_set_overrides(records: RecordStore) -> None:
    records.set_latest("toy", "export", KEY)
    records.set_latest("toy@1234abcd", "export", OTHER)
    assert records.variants() == ["toy@1234abcd"]
    assert records.all_latest_keys() == {KEY, OTHER}
    assert records.all_latest_keys(variants=False) == {KEY}


def test_a_record_without_the_optional_fields_still_reads(records: RecordStore) -> None:
    """Summary, seconds and created came later: an older record is still a hit."""
    data = _record().to_json()
    for optional in ("summary", "seconds", "created"):
        del data[optional]
    write_json_atomic(records.records / KEY[:2] / f"{KEY[2:]}.json", data)
    record = records.get(KEY)
    assert record is not None and record.outputs == _record().outputs
    assert (record.summary, record.seconds, record.created) == ({}, 0.0, "")
