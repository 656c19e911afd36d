"""The two backends called directly: what a task gives back, progress on the way, and a worker that dies."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from harness import TOY

from pipeline.backends import Backend
from pipeline.backends.local import InProcess, ProcessPool
from pipeline.backends.worker import Outcome, Task
from pipeline.cache import Cache
from pipeline.cache.records import OutputRecord
from pipeline.status import Status

OUTPUTS = {
    "Write": {"model": ("out.txt", False)},
    "Call": {"model": ("called.txt", False)},
    "Upper": {"model": ("upper.txt", False)},
}


def toy_task(tmp_path: Path, stage: str, kind: str, params: dict) -> Task:
    (tmp_path / stage / "out").mkdir(parents=True)
    return Task(
        stage=stage,
        kind_module="toystages",
        kind_class=kind,
        params=params,
        inputs={},
        outputs=OUTPUTS[kind],
        store=str(tmp_path / "cache"),
        workspace=str(tmp_path / stage),
        recipe_dir=str(TOY),
        model=None,
        log=str(tmp_path / f"{stage}.log"),
    )


def finish(backend: Backend, stages: set[str]) -> dict[str, Outcome]:
    ended: dict[str, Outcome] = {}
    deadline = time.monotonic() + 120  # a stuck backend fails the test, not the suite
    while time.monotonic() < deadline:
        ended.update(backend.poll(timeout=1.0))
        if set(ended) == stages:
            return ended
    raise AssertionError(f"backend never finished {stages - set(ended)}")


@pytest.mark.parametrize("make", [InProcess, ProcessPool])
def test_a_task_runs_and_its_progress_and_outcome_come_back(tmp_path: Path, make) -> None:
    progress: list[tuple[str, float]] = []
    backend = make(lambda stage, done, total, desc: progress.append((stage, done)))
    try:
        backend.submit(toy_task(tmp_path, "a", "Write", {"text": "ab", "repeat": 3}))
        outcome = finish(backend, {"a"})["a"]
    finally:
        backend.close()
    assert outcome.status == Status.RAN and outcome.summary == {"chars": 6}
    stored = outcome.outputs["model"]
    assert (stored.path, stored.is_dir, stored.size) == ("out.txt", False, 6)
    assert Cache(tmp_path / "cache").objects.path(stored.digest).read_text() == "ababab"
    assert progress and progress[-1] == ("a", 10)


def test_the_pool_runs_tasks_side_by_side_and_reuses_its_workers(tmp_path: Path) -> None:
    pool = ProcessPool(lambda *a: None)
    try:
        for name in ("a", "b"):
            pool.submit(toy_task(tmp_path, name, "Write", {"text": name, "sleep": 0.2}))
        assert set(finish(pool, {"a", "b"})) == {"a", "b"}
        assert len(pool._idle) == 2
        pool.submit(toy_task(tmp_path, "c", "Write", {"text": "c"}))
        assert finish(pool, {"c"})["c"].status == Status.RAN
        assert len(pool._idle) == 2, "the third task ran in a worker already started"
    finally:
        pool.close()


def test_a_worker_that_dies_in_native_code_fails_its_stage_and_the_pool_goes_on(tmp_path: Path) -> None:
    pool = ProcessPool(lambda *a: None)
    try:
        pool.submit(toy_task(tmp_path, "crash", "Call", {"fn": "os:abort"}))
        outcome = finish(pool, {"crash"})["crash"]
        assert outcome.status == Status.FAILED
        assert outcome.error == "worker process died (killed by signal 6)"
        pool.submit(toy_task(tmp_path, "after", "Write", {}))
        assert finish(pool, {"after"})["after"].status == Status.RAN
    finally:
        pool.close()


def test_a_cancelled_task_never_reports_and_its_worker_is_gone(tmp_path: Path) -> None:
    pool = ProcessPool(lambda *a: None)
    try:
        pool.submit(toy_task(tmp_path, "slow", "Write", {"sleep": 30}))
        worker = pool._busy["slow"][0]
        pool.cancel("slow")
        assert not worker.proc.is_alive()
        assert pool.poll(timeout=0.2) == []
    finally:
        pool.close()


@pytest.mark.parametrize("make", [InProcess, ProcessPool])
def test_inputs_named_by_digest_are_fetched_from_the_store_into_the_workspace(tmp_path: Path, make) -> None:
    cache = Cache(tmp_path / "cache")
    source = tmp_path / "src.txt"
    source.write_text("# comment\nkeep me\n")
    digest = cache.objects.put(source, is_dir=False)
    task = toy_task(tmp_path, "up", "Upper", {})
    task = dataclasses.replace(task, inputs={"model": OutputRecord(digest, False, 18, "text.txt")})
    backend = make(lambda *a: None)
    try:
        backend.submit(task)
        outcome = finish(backend, {"up"})["up"]
    finally:
        backend.close()
    assert outcome.status == Status.RAN, outcome.error
    assert (tmp_path / "up" / "in" / "model" / "text.txt").read_text() == "# comment\nkeep me\n"
    assert cache.objects.path(outcome.outputs["model"].digest).read_text() == "KEEP ME"


@pytest.mark.parametrize("make", [InProcess, ProcessPool])
def test_a_task_whose_store_is_a_remote_reads_and_writes_only_there(tmp_path: Path, make) -> None:
    """What a worker on another machine does: inputs from the remote store, outputs to it, no local cache."""
    pytest.importorskip("fsspec")
    from pipeline.remote.objects import RemoteObjects
    from pipeline.remote.store import Remote

    url = (tmp_path / "remote").as_uri()
    source = tmp_path / "src.txt"
    source.write_text("remote text\n")
    digest = RemoteObjects(Remote(url)).put(source, is_dir=False)
    task = toy_task(tmp_path, "up", "Upper", {})
    task = dataclasses.replace(task, store=url, inputs={"model": OutputRecord(digest, False, 12, "text.txt")})
    backend = make(lambda *a: None)
    try:
        backend.submit(task)
        outcome = finish(backend, {"up"})["up"]
    finally:
        backend.close()
    assert outcome.status == Status.RAN, outcome.error
    out = outcome.outputs["model"]
    fetched = tmp_path / "check.txt"
    RemoteObjects(Remote(url)).fetch(out.digest, False, fetched)
    assert fetched.read_text() == "REMOTE TEXT" and out.size == len("REMOTE TEXT")
    assert not (tmp_path / "cache").exists(), "nothing went through a local cache"


def test_a_declared_output_the_kind_did_not_write_fails_the_stage_and_stores_nothing(tmp_path: Path) -> None:
    task = toy_task(tmp_path, "a", "Write", {"text": "x"})
    task = dataclasses.replace(task, outputs={**task.outputs, "extra": ("extra.txt", False)})
    backend = InProcess(lambda *a: None)
    backend.submit(task)
    outcome = finish(backend, {"a"})["a"]
    assert (outcome.status, outcome.error) == (Status.FAILED, "stage a did not write its output 'extra' (extra.txt)")
    assert outcome.outputs == {} and Cache(tmp_path / "cache").objects.all_objects() == []
