"""pipeline.run.executor through its in-process path (`RunOptions(in_process=True)`), wired as `cmd_run` wires it:
what runs, what is published, what a failure leaves behind, early cutoff."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from harness import HEAD, Project

from pipeline.errors import EXIT_FAILED, EXIT_GATE, EXIT_OK, EXIT_UNAVAILABLE
from pipeline.run.events import StageErrored, StageFinished


def _never(self: Any, ctx: Any) -> dict:
    raise AssertionError(f"run() called for {ctx.stage}")


def test_a_first_run_builds_every_stage_once_and_publishes_it(toy: Project) -> None:
    recipe = toy.load()
    result, reporter = toy.run(recipe)
    assert result.exit_code == EXIT_OK
    assert toy.statuses(result) == {"write": "ran", "upper": "ran", "other": "ran", "join": "ran"}
    assert sorted(toy.runs()) == ["join", "other", "upper", "write"]
    for stage in recipe.stages:
        record = toy.store.records.latest("toy", stage)
        assert record is not None and record.stage == stage
        assert all(toy.store.objects.verify(o.digest, o.is_dir) for o in record.outputs.values())
    view = toy.store.view_dir("toy", "upper") / "upper.txt"
    assert view.read_text() == "ABC" and stat.S_IMODE(view.stat().st_mode) & 0o222 == 0
    assert (toy.store.view_dir("toy", "join") / "joined" / "sub" / "b.txt").read_text() == "xyz"
    assert reporter.one(StageFinished, "write").same_as_before is False  # never built before
    assert (toy.root / "toy.lock").exists()
    assert not list(toy.store.tmp.iterdir())  # every work directory cleaned up


def test_a_cached_rerun_calls_no_run(toy: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = toy.load()
    toy.run(recipe)
    for node in recipe.stages.values():
        monkeypatch.setattr(node.kind, "run", _never)
    result, reporter = toy.run(recipe)
    assert result.exit_code == EXIT_OK
    assert set(toy.statuses(result).values()) == {"cached"}
    assert len(toy.runs()) == 4  # the first run's four, no more
    assert not [e for e in reporter.events if isinstance(e, (StageFinished, StageErrored))]
    assert all(reporter.about(stage) for stage in recipe.stages)  # each one reported (as cached)


def test_early_cutoff_a_rerun_with_the_same_bytes_stops_the_rebuild(toy: Project) -> None:
    toy.run(toy.load())
    edited = toy.load((toy.root / "toy.yaml").read_text().replace('text: "abc\\n"', 'text: "abc\\n# a comment\\n"'))
    result, reporter = toy.run(edited)
    assert toy.statuses(result) == {"write": "ran", "upper": "ran", "other": "cached", "join": "cached"}
    assert toy.runs()[4:] == ["write", "upper"]  # upper dropped the comment: join saw the same input
    assert reporter.one(StageFinished, "write").same_as_before is False
    assert reporter.one(StageFinished, "upper").same_as_before is True


def test_a_forced_stage_reruns_and_its_unchanged_output_cuts_off_the_rest(toy: Project) -> None:
    recipe = toy.load()
    toy.run(recipe)
    result, reporter = toy.run(recipe, force=("upper",))
    assert toy.statuses(result) == {"write": "cached", "upper": "ran", "other": "cached", "join": "cached"}
    assert toy.runs()[4:] == ["upper"]
    assert reporter.one(StageFinished, "upper").reasons == ("forced",)
    everything, _ = toy.run(recipe, force_all=True)
    assert set(toy.statuses(everything).values()) == {"ran"}  # --force '*': every stage, cut off or not
    assert sorted(toy.runs()[5:]) == ["join", "other", "upper", "write"]


def test_targets_build_only_their_ancestors(toy: Project) -> None:
    result, _ = toy.run(toy.load(), targets=("upper",))
    assert toy.statuses(result) == {"write": "ran", "upper": "ran"}
    assert toy.runs() == ["write", "upper"]


def test_a_failing_stage_leaves_no_record_no_ref_no_object_and_no_view(toy: Project) -> None:
    recipe = toy.load(HEAD + "stages:\n  ok: {uses: toy.write}\n  bad: {uses: toy.fail, from: ok}\n")
    result, reporter = toy.run(recipe)
    assert result.exit_code == EXIT_FAILED
    assert toy.statuses(result) == {"ok": "ran", "bad": "failed"}
    assert [r.stage for r in toy.store.records.all()] == ["ok"]
    assert toy.store.records.latest("toy", "bad") is None
    contents = [toy.store.objects.path(d).read_bytes() for d in toy.store.objects.all_objects()]
    assert b"partial" not in contents and contents == [b"hello"]
    assert not toy.store.view_dir("toy", "bad").exists()
    failure = reporter.one(StageErrored, "bad")
    assert failure.error == "ValueError: boom on purpose"
    assert "boom on purpose" in Path(failure.log).read_text()
    assert (Path(failure.kept) / "never.txt").read_text() == "partial"  # kept under runs/ for inspection, not published
    assert not list(toy.store.tmp.iterdir())
    assert "bad" not in (toy.root / "toy.lock").read_text()


def test_a_stage_that_skips_a_declared_output_fails_and_publishes_nothing(
    toy: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = toy.load(HEAD + "stages:\n  w: {uses: toy.write}\n")
    monkeypatch.setattr(recipe.stages["w"].kind, "run", lambda self, ctx: {})
    result, reporter = toy.run(recipe)
    assert result.exit_code == EXIT_FAILED and toy.statuses(result) == {"w": "failed"}
    assert reporter.one(StageErrored, "w").error == "stage w did not write its output 'model' (out.txt)"
    assert toy.store.records.all() == [] and toy.store.objects.all_objects() == []


def test_a_failed_gate_exits_with_the_gate_code(toy: Project) -> None:
    recipe = toy.load(HEAD + "stages:\n  check: {uses: toy.fail, with: {gate: true}}\n")
    result, reporter = toy.run(recipe)
    assert result.exit_code == EXIT_GATE
    assert result.status["check"].startswith("gate")  # the enum's word is "gate failed"
    assert "logits: cosine 0.5 < 0.99" in reporter.one(StageErrored, "check").error
    assert toy.store.records.all() == []


def test_after_a_failure_the_rest_is_not_run_unless_keep_going(toy: Project) -> None:
    recipe = toy.load(
        HEAD + "stages:\n  bad: {uses: toy.fail}\n  after: {uses: toy.upper, from: bad}\n  ok: {uses: toy.write}\n"
    )
    result, _ = toy.run(recipe)
    assert toy.statuses(result) == {"bad": "failed", "after": "not run", "ok": "not run"}
    result, _ = toy.run(recipe, keep_going=True)
    assert result.exit_code == EXIT_FAILED
    assert toy.statuses(result) == {"bad": "failed", "after": "skipped", "ok": "ran"}
    assert toy.runs() == ["bad", "bad", "ok"]


def test_an_unavailable_stage_exits_4_unless_skipping_is_asked_for(toy: Project) -> None:
    recipe = toy.load(
        HEAD + "stages:\n  ok: {uses: toy.write}\n  engine: {uses: toy.gpu, from: ok}\n"
        "  after: {uses: toy.upper, from: engine}\n"
    )
    result, _ = toy.run(recipe)
    assert result.exit_code == EXIT_UNAVAILABLE
    assert toy.statuses(result) == {"ok": "ran", "engine": "unavailable", "after": "skipped"}
    result, _ = toy.run(recipe, skip_unavailable=True)
    assert result.exit_code == EXIT_OK
    assert toy.statuses(result) == {"ok": "cached", "engine": "unavailable", "after": "skipped"}


def test_a_corrupted_object_is_rebuilt_not_served(toy: Project) -> None:
    recipe = toy.load()
    toy.run(recipe)
    obj = toy.store.objects.path(toy.store.records.latest("toy", "other").outputs["model"].digest)
    obj.chmod(0o644)
    obj.write_text("tampered!")
    result, reporter = toy.run(recipe)
    assert toy.statuses(result)["other"] == "ran"
    assert reporter.one(StageFinished, "other").reasons == ("output out.txt corrupted in cache",)
    assert obj.read_text() == "xyz"  # the object is whole again
    assert (toy.store.view_dir("toy", "other") / "out.txt").read_text() == "xyz"
