"""pipeline.cache.lockfile: deterministic output (diffs cleanly in review), and runs merging into one lock file."""

from __future__ import annotations

from pathlib import Path

import yaml
from harness import Project

from pipeline.cache import lockfile
from pipeline.cache.records import OutputRecord, StageRecord


def _record(stage: str, key: str) -> StageRecord:
    return StageRecord(
        key=key,
        stage=stage,
        kind="toy.write",
        components={"toolchain": {"zlib": "1", "python": "3.11"}, "params": {"text": "x"}},
        outputs={"z": OutputRecord("e5" * 32, True, 7, "zdir"), "a": OutputRecord("f6" * 32, False, 3, "a.txt")},
        summary={"chars": 3},
        seconds=0.25,
        created="2026-01-01T00:00:00+00:00",
    )


def test_an_entry_holds_kind_key_sorted_outputs_and_toolchain_only(tmp_path: Path) -> None:
    entry = lockfile.entry(_record("s", "1" * 64))
    assert entry == {
        "kind": "toy.write",
        "key": "1" * 64,
        "outputs": {
            "a": {"path": "a.txt", "digest": "f6" * 32, "size": 3},
            "z": {"path": "zdir", "digest": "e5" * 32, "size": 7, "dir": True},
        },
        "toolchain": {"python": "3.11", "zlib": "1"},
    }
    assert list(entry["outputs"]) == ["a", "z"] and list(entry["toolchain"]) == ["python", "zlib"]


def test_the_same_stages_give_the_same_bytes_in_recipe_order(tmp_path: Path) -> None:
    one, two = tmp_path / "one.lock", tmp_path / "two.lock"
    stages = {n: lockfile.entry(_record(n, c * 64)) for n, c in (("b", "2"), ("a", "1"), ("c", "3"))}
    assert lockfile.write_lock(one, stages, ["c", "a", "b"])
    assert lockfile.write_lock(two, dict(reversed(list(stages.items()))), ["c", "a", "b", "gone"])
    text = one.read_text()
    assert text == two.read_text()
    assert text.startswith(lockfile.HEADER) and "created" not in text and "seconds" not in text  # no timestamps
    assert list(yaml.safe_load(text)["stages"]) == ["c", "a", "b"]
    assert lockfile.read_lock(one) == stages


def test_an_unchanged_lock_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "r.lock"
    stages = {"a": lockfile.entry(_record("a", "1" * 64))}
    assert lockfile.write_lock(path, stages, ["a"]) is True
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert lockfile.write_lock(path, stages, ["a"]) is False
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.lock"]  # no temp file left beside it


def test_a_missing_or_damaged_lock_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "r.lock"
    assert lockfile.read_lock(path) == {}
    for text in ("stages: [unclosed", "- a list", "stages: 5", ""):
        path.write_text(text)
        assert lockfile.read_lock(path) == {}, text
    assert lockfile.lock_path(Path("recipes/x.yaml")) == Path("recipes/x.lock")


def test_runs_of_different_targets_merge_into_one_lock(toy: Project) -> None:
    recipe = toy.load()
    toy.run(recipe, targets=("upper",))
    assert list(lockfile.read_lock(toy.root / "toy.lock")) == ["write", "upper"]
    toy.run(recipe, targets=("other",))
    merged = lockfile.read_lock(toy.root / "toy.lock")
    assert list(merged) == ["write", "upper", "other"]  # recipe order, neither run's stages lost
    toy.run(recipe)
    full = (toy.root / "toy.lock").read_text()
    assert list(lockfile.read_lock(toy.root / "toy.lock")) == ["write", "upper", "other", "join"]
    toy.run(recipe)  # all cached: the same bytes
    assert (toy.root / "toy.lock").read_text() == full


def test_a_stage_removed_from_the_recipe_leaves_the_lock(toy: Project) -> None:
    toy.run(toy.load())
    smaller = toy.load((toy.root / "toy.yaml").read_text().split("  other:")[0])
    toy.run(smaller)
    assert list(lockfile.read_lock(toy.root / "toy.lock")) == ["write", "upper"]


def test_a_variant_run_leaves_the_lock_alone(toy: Project) -> None:
    toy.run(toy.load())
    before = (toy.root / "toy.lock").read_text()
    toy.run(toy.load(overrides=("stages.write.with.repeat=2",)))
    assert (toy.root / "toy.lock").read_text() == before
