"""`pipeline summary`'s rows follow the one up-to-date rule (pipeline/run/freshness.py), called directly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pipeline.cache import Cache
from pipeline.cache.records import StageRecord
from pipeline.report.markdown import summarize
from pipeline.run.plan import Decision
from pipeline.status import Status

KEY = "ab" * 32


def _recipe() -> SimpleNamespace:
    kind = SimpleNamespace(kind="toy.engine", outputs={})
    return SimpleNamespace(name="r", base_name="r", stages={"engine": SimpleNamespace(kind=kind)})


def test_a_stage_that_cannot_run_here_is_unavailable_even_when_its_key_has_a_record(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    cache.records.put(StageRecord(KEY, "engine", "toy.engine", {}, {}))  # e.g. pulled unverified, not served
    unavailable = Decision("engine", Status.UNAVAILABLE, ("needs an H100",), key=KEY)
    summary = summarize(_recipe(), cache, [unavailable])  # type: ignore[arg-type]
    assert [(r.status, r.why) for r in summary.rows] == [(Status.UNAVAILABLE, "needs an H100")]
    assert summary.complete


def test_a_stage_never_built_is_not_built_and_the_summary_is_incomplete(tmp_path: Path) -> None:
    never = Decision("engine", Status.RUN, ("never built",), key=KEY)
    summary = summarize(_recipe(), Cache(tmp_path / "c"), [never])  # type: ignore[arg-type]
    assert [(r.status, r.why) for r in summary.rows] == [(Status.NOT_BUILT, "never built")]
    assert not summary.complete
