"""Executes a plan: topological order, a site that runs the tasks (pipeline/run/sites.py), atomic publish, events out.

The loop is graphlib's prepare / get_ready / done. For each ready stage the
key is computed just before it would run (its parents' output digests are
known by then: early cutoff). A miss takes the key's OS lock, runs the stage
in a worker inside a fresh directory, and only on success moves its outputs
into the object store and writes the record. A failure keeps its work
directory and log under runs/<run id>/ and publishes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import graphlib
import os
import shutil
import time
from enum import Enum
from typing import TYPE_CHECKING

from pipeline.backends import Backend
from pipeline.backends.worker import Outcome
from pipeline.cache import Cache, lockfile
from pipeline.cache.failures import FailureRecord
from pipeline.cache.flock import KeyLock
from pipeline.cache.records import StageRecord
from pipeline.cache.views import update_view, view_if_local
from pipeline.cache.workspace import clean_stale, new_workspace
from pipeline.errors import Interrupted, UsageError
from pipeline.faults import fault
from pipeline.recipe.graph import StageGraph
from pipeline.recipe.load import Recipe
from pipeline.run.events import (
    Reporter,
    RunFinished,
    RunStarted,
    StageCached,
    StageErrored,
    StageFinished,
    StageNotRun,
    StageProgress,
    StagePulled,
    StageSkipped,
    StageStarted,
    StageUnavailable,
    StageWaiting,
)
from pipeline.run.options import RunOptions, RunResult
from pipeline.run.plan import Decision, Planner
from pipeline.run.sites import PublishError, site_for, write_log
from pipeline.run.tasks import RunningTask, take_locks, task_for
from pipeline.status import Status, run_exit_code

if TYPE_CHECKING:
    from pipeline.remote.results import RemoteResults
    from pipeline.remote.store import Remote


class Turn(Enum):
    """What one turn of the loop did with a ready stage."""

    SETTLED = "settled"  # cached, pulled, skipped or unavailable: no worker needed
    STARTED = "started"  # submitted to the backend
    BLOCKED = "blocked"  # another process holds its key or the CPU, or a parent is rebuilt: next turn


class Executor:
    def __init__(
        self,
        recipe: Recipe,
        graph: StageGraph,
        cache: Cache,
        options: RunOptions,
        reporter: Reporter,
        remote: Remote | None = None,
    ):
        self.recipe, self.graph, self.cache, self.options, self.reporter = recipe, graph, cache, options, reporter
        self.remote = remote
        if options.executor == "ray" and remote is None:
            raise UsageError("--executor ray needs a remote store (--remote URL or PIPELINE_REMOTE)")
        # What a remote serves is downloaded for the stages asked for (else the final ones) and for the
        # engines; other intermediates stay there until a stage that runs here reads them.
        used = {p for parents in graph.parents.values() for p in parents}
        asked = set(options.targets) or {n for n in graph.order if n not in used}
        self.wanted = asked | {n for n in graph.order if recipe.stages[n].kind.deliverable}
        self.results: RemoteResults | None = None  # results known by record whose objects are on the remote
        if remote is not None:
            from pipeline.remote.results import RemoteResults

            self.results = RemoteResults(remote, cache, recipe.name)
        self._rebuilding: set[str] = set()  # pulled stages rebuilt here because the remote's copy failed its check
        self.run_id = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + str(os.getpid())
        self.run_dir = cache.runs / self.run_id
        self.site = site_for(options, recipe, cache, self.run_id, remote, self.results, self.wanted)
        self.planner = Planner(
            recipe,
            cache,
            force=options.force,
            force_all=options.force_all,
            remote=remote,
            placement=self.site.placement if self.site.places_targets else None,
            skip_unavailable=options.skip_unavailable,
        )
        self._backend: Backend | None = None
        self._running: dict[str, RunningTask] = {}
        self._waiting: set[str] = set()
        self.known: dict[str, StageRecord] = {}
        self.status: dict[str, Status] = {}
        self._cannot_run_here: set[str] = set()  # unavailable, or skipped for that alone (a fan-in may go without)
        self._left_out: dict[str, tuple[str, ...]] = {}  # fan-ins decided without members (`Planner.without`)

    # -- the loop -------------------------------------------------------------
    def run(self) -> RunResult:
        start = time.perf_counter()
        order = list(self.graph.order)
        self.planner.prepare(order)  # recipe errors surface before anything runs
        self.graph.remember()
        clean_stale(self.cache.tmp)
        position = {n: i for i, n in enumerate(order)}
        self.reporter.handle(RunStarted(self.recipe.name, self.run_id, order))
        sorter = graphlib.TopologicalSorter(self.graph.parents)
        sorter.prepare()
        pending: list[str] = []
        stopping = False
        try:
            while sorter.is_active():
                pending.extend(sorted(sorter.get_ready(), key=position.__getitem__))
                for name in list(pending):
                    if not stopping and not self._can_start(name):
                        continue
                    if stopping:
                        self.status[name] = Status.NOT_RUN
                        self.reporter.handle(StageNotRun(name, self.recipe.stages[name].kind.kind))
                        outcome = Turn.SETTLED
                    else:
                        outcome = self._start_or_settle(name)
                    if outcome != Turn.BLOCKED:
                        pending.remove(name)
                        self._waiting.discard(name)
                    if outcome == Turn.SETTLED:
                        sorter.done(name)
                if not self._running:
                    if pending:  # everything left waits on another process's lock
                        time.sleep(0.2)
                    continue
                for name in self._wait(timeout=0.2 if self._waiting else None):
                    if name in self._rebuilding:  # the sorter settled it when it was pulled
                        self._rebuilding.discard(name)
                    else:
                        sorter.done(name)
                    if self.status[name].failed and not self.options.keep_going:
                        stopping = True
        except KeyboardInterrupt:
            self._abort()
            raise Interrupted() from None
        finally:
            self._shutdown()
            self.cache.memo.flush()
        self._write_lock()
        code = run_exit_code(self.status.values(), self.options.skip_unavailable)
        counts: dict[Status, int] = {}
        for s in self.status.values():
            counts[s] = counts.get(s, 0) + 1
        transfer = dataclasses.asdict(self.remote.transfer) if self.remote is not None else {}
        self.reporter.handle(
            RunFinished(self.run_id, time.perf_counter() - start, code, counts, str(self.run_dir), transfer)
        )
        return RunResult(self.run_id, code, dict(self.status))

    def _can_start(self, name: str) -> bool:
        running = [self.recipe.stages[n].kind for n in self._running]
        return self.site.admits(self.recipe.stages[name].kind, running, self.options.jobs)

    def _start_or_settle(self, name: str) -> Turn:
        """Settle a stage that needs no worker (cached, skipped, unavailable), else start it.

        BLOCKED: another process holds its key or the CPU, retried on the next turn of the loop (after which
        a result built meanwhile is a hit).
        """
        node = self.recipe.stages[name]
        kind = node.kind.kind
        bad = {p for p in self.graph.parents[name] if not (p in self.status and self.status[p].built)}
        left_out = self.planner.without(name, bad) if bad and bad <= self._cannot_run_here else ()
        if left_out is None or bad and not left_out:
            why = ", ".join(f"{p} {self.status.get(p, Status.NOT_RUN)}" for p in sorted(bad))
            self.status[name] = Status.SKIPPED
            if bad <= self._cannot_run_here:
                self._cannot_run_here.add(name)
            self.reporter.handle(StageSkipped(name, kind, why))
            return Turn.SETTLED
        if left_out:
            self._left_out[name] = left_out
        decision = self.planner.decide(name, self.known, left_out)
        if decision.status == Status.UNAVAILABLE:
            self._cannot_run_here.add(name)
            self.status[name] = Status.UNAVAILABLE
            self.reporter.handle(StageUnavailable(name, kind, decision.reasons[0]))
            return Turn.SETTLED
        if decision.status == Status.CACHED and decision.record is not None:
            self._settle_cached(name, decision.record, name in self._waiting, decision.notes)
            return Turn.SETTLED
        if decision.status == Status.PULLED:
            if self._settle_pulled(name, decision):
                return Turn.SETTLED
            decision = self.planner.decide(name, self.known, left_out)  # the remote's copy failed its check
        if any(p in self._running for p in self.graph.parents[name]):
            return Turn.BLOCKED  # a parent the remote could not deliver is being rebuilt
        unfetched = self._unfetched_parent(name) if self.site.parents_here() else None
        if unfetched is not None:
            return self._rebuild(unfetched)
        locks = self._lock(name, decision)
        if isinstance(locks, str):
            self._wait_for(name, locks)
            return Turn.BLOCKED
        fault("locked", name)
        self._launch(name, decision, *locks)
        return Turn.STARTED

    def _lock(self, name: str, decision: Decision) -> tuple[KeyLock, KeyLock] | str:
        """The stage's key lock and the CPU lock (shared or not, as the site says), or why another process
        holds one of them (nothing is held then)."""
        assert decision.key is not None, "a stage that runs has a key"
        return take_locks(self.cache.locks, decision.key, self.site.cpu_lock_shared(self.recipe.stages[name].kind))

    def _wait_for(self, name: str, why: str) -> None:
        """Report a stage blocked by another process, once; the loop retries it without stalling others."""
        if name not in self._waiting:
            self._waiting.add(name)
            self.reporter.handle(StageWaiting(name, why))

    def _settle_cached(
        self, name: str, record: StageRecord, built_elsewhere: bool = False, notes: tuple[str, ...] = ()
    ) -> None:
        warnings = (*record.warnings, *notes)
        self.known[name] = record
        self.cache.records.set_latest(self.recipe.name, name, record.key)
        views = update_view(self.cache, self.recipe.name, name, record)
        self.status[name] = Status.CACHED
        kind = self.recipe.stages[name].kind.kind
        if built_elsewhere:
            self.reporter.handle(
                StageFinished(
                    name,
                    kind,
                    ("built by another run",),
                    0.0,
                    views,
                    record.summary,
                    False,
                    built_elsewhere=True,
                    warnings=warnings,
                )
            )
        else:
            self.reporter.handle(StageCached(name, kind, views, record.summary, record.created, warnings=warnings))

    # -- the remote ----------------------------------------------------------------
    def _settle_pulled(self, name: str, decision: Decision) -> bool:
        """Take a stage from the remote: its record now, its objects only if it is wanted here (else when a
        stage that runs here needs them). False when a download failed its check (the stage is a miss)."""
        from pipeline.remote.results import Undeliverable

        assert self.results is not None and decision.remote is not None
        before = self.results.remote.transfer.downloaded
        try:
            record = self.results.settle(name, decision.remote, here=name in self.wanted)
        except Undeliverable:
            return False
        fetched = self.results.remote.transfer.downloaded - before
        self.known[name] = record
        views = view_if_local(self.cache, self.recipe.name, name, record)
        kind = self.recipe.stages[name].kind.kind
        warnings = (*record.warnings, *decision.notes)
        if name not in self.wanted and decision.remote.remembered:  # seen there before: nothing new to say
            self.status[name] = Status.CACHED
            self.reporter.handle(
                StageCached(name, kind, views, record.summary, record.created, on_remote=True, warnings=warnings)
            )
            return True
        self.status[name] = Status.PULLED
        self.reporter.handle(
            StagePulled(name, kind, views, record.summary, record.created, fetched, bool(views), warnings=warnings)
        )
        return True

    def _unfetched_parent(self, name: str) -> str | None:
        """Download the outputs of pulled parents that `name` (about to run) reads; a parent whose objects
        the remote cannot deliver is returned, to be rebuilt here."""
        if self.results is None:
            return None
        got, undelivered = self.results.deliver(self.graph.parents[name])
        for parent, record in got.items():
            self.known[parent] = record
            update_view(self.cache, self.recipe.name, parent, record)
        return undelivered

    def _rebuild(self, parent: str) -> Turn:
        """Build here a pulled parent whose remote objects could not be delivered; its child waits for it."""
        if any(p in self._running for p in self.graph.parents[parent]):
            return Turn.BLOCKED  # one of its own parents is being rebuilt
        assert self.results is not None, "only a remote's results are rebuilt"
        decision = self.planner.decide(parent, self.known, self._left_out.get(parent, ()))
        if decision.status == Status.CACHED and decision.record is not None:  # another run built it meanwhile
            self.results.release(parent)
            self.known[parent] = decision.record
            return Turn.BLOCKED
        if decision.status != Status.RUN:  # cannot be built here: its children are skipped
            self.results.release(parent)
            self.status[parent] = decision.status
            return Turn.BLOCKED
        grandparent = self._unfetched_parent(parent)  # it reads its parents' outputs here, as any stage does
        if grandparent is not None:
            return self._rebuild(grandparent)
        locks = self._lock(parent, decision)
        if isinstance(locks, str):
            return Turn.BLOCKED  # another run builds it; retried on the next turn of the loop
        self.results.release(parent)
        del self.known[parent]
        self._rebuilding.add(parent)
        self._launch(parent, decision, *locks)
        return Turn.BLOCKED

    # -- running ----------------------------------------------------------------
    def _launch(self, name: str, decision: Decision, lock: KeyLock, cpu: KeyLock) -> None:
        node = self.recipe.stages[name]
        ws = new_workspace(self.cache.tmp, name)
        log = self.run_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        task = task_for(
            self.recipe,
            name,
            self.known,
            self.cache.root,
            ws,
            log,
            decision.components,
            decision.forced,
            decision.left_out,
        )
        running = RunningTask(name, decision, ws, lock, cpu, log, time.perf_counter())
        self._running[name] = running
        self.reporter.handle(StageStarted(name, node.kind.kind, decision.reasons, str(log)))
        self.backend.submit(self.site.prepare(task, decision, self.known))

    @property
    def backend(self) -> Backend:
        """Made when a first stage must run: a fully cached run starts no worker and contacts no cluster."""
        if self._backend is None:
            self._backend = self.site.backend(self._progress)
        return self._backend

    def _progress(self, stage: str, done: float, total: float | None, desc: str) -> None:
        self.reporter.handle(StageProgress(stage, done, total, desc))

    def _wait(self, timeout: float | None = None) -> list[str]:
        """Block (up to `timeout`) until some running stage ends; settle and return the stages that did."""
        finished = []
        for name, outcome in self.backend.poll(timeout):
            if name in self._running:
                self._complete(name, outcome)
                finished.append(name)
        return finished

    def _complete(self, name: str, outcome: Outcome) -> None:
        r = self._running[name]
        kind = self.recipe.stages[name].kind
        node = outcome.node
        write_log(r.log, outcome)
        try:
            if outcome.status == Status.RAN:
                try:
                    record = self.site.publish(name, kind, r.decision, outcome)
                except PublishError as exc:
                    outcome = Outcome(Status.FAILED, {}, str(exc), outcome.seconds)
                else:
                    self.known[name] = record
                    self.status[name] = Status.RAN
                    self.cache.failures.remove(record.key)
                    views = self.site.views(self.cache, self.recipe.name, name, record)
                    prev = r.decision.previous
                    same = prev is not None and {k: o.digest for k, o in prev.outputs.items()} == {
                        k: o.digest for k, o in record.outputs.items()
                    }
                    self.reporter.handle(
                        StageFinished(
                            name,
                            kind.kind,
                            r.decision.reasons,
                            outcome.seconds,
                            views,
                            outcome.summary,
                            same,
                            node=node,
                            warnings=(*outcome.warnings, *r.decision.notes),
                            trials=outcome.trials,
                        )
                    )
            if outcome.status != Status.RAN:
                self.status[name] = outcome.status
                kept = self.run_dir / f"{name}.workdir"
                shutil.move(str(r.workspace), kept)
                if r.decision.key is not None:  # how it failed, with the reports it wrote that are here
                    reports = {n: o for n, o in outcome.outputs.items() if self.cache.objects.has(o.digest, o.is_dir)}
                    failed = FailureRecord.now(r.decision.key, name, kind.kind, outcome.status, outcome.error)
                    failed = dataclasses.replace(failed, run_id=self.run_id, log=str(r.log), reports=reports)
                    self.cache.failures.put(dataclasses.replace(failed, warnings=outcome.warnings))
                self.reporter.handle(
                    StageErrored(
                        name,
                        kind.kind,
                        outcome.error,
                        str(r.log),
                        outcome.seconds,
                        gate=outcome.status == Status.GATE_FAILED,
                        kept=str(kept / "out"),
                        node=node,
                        warnings=outcome.warnings,
                        trials=outcome.trials,
                    )
                )
        finally:
            r.lock.release()
            r.cpu.release()
            shutil.rmtree(r.workspace, ignore_errors=True)
            del self._running[name]

    # -- endings ----------------------------------------------------------------
    def _abort(self) -> None:
        for r in list(self._running.values()):
            self.backend.cancel(r.stage)
            r.lock.release()
            r.cpu.release()
            shutil.rmtree(r.workspace, ignore_errors=True)
            self.status[r.stage] = Status.INTERRUPTED
        self._running.clear()

    def _shutdown(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self.site.close()

    def _write_lock(self) -> None:
        """Merge what this run knows into `<recipe>.lock`, under a file lock (concurrent runs of one
        recipe each add their stages). A run with --set overrides built something other than the
        recipe as written, so it leaves the lock file alone; so does a run that settled nothing."""
        if self.recipe.overrides or not self.known:
            return
        order = list(self.recipe.stages)
        lockfile.record_run(self.recipe.path, order, self.known, self.cache.locks, self.cache.lockfiles_index())
