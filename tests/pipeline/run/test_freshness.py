"""pipeline/run/freshness.py: the one rule that says whether a stage is up to date, which `pipeline status`
(with the lock file) and `pipeline summary` (without) share."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cache import Cache
from pipeline.cache.failures import FailureRecord
from pipeline.cache.records import StageRecord
from pipeline.run.freshness import state
from pipeline.run.plan import Decision
from pipeline.status import Status


class _Recipe:
    name = base_name = "r"


KEY = "ab" * 32
RECORD = StageRecord(KEY, "s", "k", {}, {})


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "c")


def test_a_current_result_is_up_to_date_and_status_also_asks_the_lock_file(cache: Cache) -> None:
    for served in (Status.CACHED, Status.PULLED):
        d = Decision("s", served, key=KEY, record=RECORD)
        assert state(_Recipe(), cache, d).status == Status.UP_TO_DATE  # summary: the content is current
        assert state(_Recipe(), cache, d, {"s": {"key": KEY}}).status == Status.UP_TO_DATE
        unrecorded = state(_Recipe(), cache, d, {})
        assert unrecorded.status == Status.STALE and unrecorded.reasons[0].startswith("not in the lock file")
        other = state(_Recipe(), cache, d, {"s": {"key": "cd" * 32}})
        assert other.status == Status.STALE and other.reasons[0].startswith("lock file holds another key")


def test_what_would_run_is_stale_or_never_built_and_the_rest_says_why(cache: Cache) -> None:
    never = state(_Recipe(), cache, Decision("s", Status.RUN, ("never built",), key=KEY))
    assert (never.status, never.reasons) == (Status.NOT_BUILT, ("never built",))
    changed = Decision("s", Status.RUN, ("param a: 1 -> 2",), key=KEY, previous=RECORD)
    assert state(_Recipe(), cache, changed).status == Status.STALE
    assert state(_Recipe(), cache, Decision("s", Status.WAITS, ("waits on p",))).status == Status.NOT_BUILT
    off = state(_Recipe(), cache, Decision("s", Status.UNAVAILABLE, ("needs a GPU",)))
    assert (off.status, off.reasons) == (Status.UNAVAILABLE, ("needs a GPU",))
    failure = FailureRecord(KEY, "s", "k", Status.GATE_FAILED, "cosine 0.9 < 0.99", "t", "run", "log", {}, ("noisy",))
    failed = state(_Recipe(), cache, Decision("s", Status.RUN, ("gate failed",), key=KEY, failure=failure))
    assert failed.status == Status.GATE_FAILED and failed.reasons == ("gate failed", "warning: noisy")
    assert not failed.current and not never.current
