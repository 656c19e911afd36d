"""The driver's side of the Ray backend: submit each task to the cluster, poll for outcomes, relay progress.

A node that dies mid-stage sends the stage to another matching node (up to `NODE_RETRIES` times); a
worker that crashes in native code fails its stage, as with the local pool. Ray never retries on its own.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from pipeline.backends import ProgressSink
from pipeline.backends.ray.cluster import task_options
from pipeline.backends.ray.node import run_on_node
from pipeline.backends.worker import Outcome, Task
from pipeline.errors import one_line
from pipeline.status import Status

NODE_RETRIES = 2
RELAY_START = 60.0  # seconds the progress relay may take to start before a run goes on without it


class ProgressRelay:
    """A Ray actor (async, no CPU) that holds the latest progress of each running stage; the driver
    long-polls it with `take`, beside its tasks, so a report reaches the console as it happens."""

    def __init__(self) -> None:
        import asyncio

        self._latest: dict[str, tuple[float, float | None, str]] = {}
        self._ready = asyncio.Event()

    async def ready(self) -> bool:
        return True

    async def report(self, stage: str, done: float, total: float | None, desc: str) -> None:
        self._latest[stage] = (done, total, desc)
        self._ready.set()

    async def take(self, timeout: float) -> dict[str, tuple[float, float | None, str]]:
        """The reports since the last take, once there is one (or after `timeout` seconds, none)."""
        import asyncio

        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._ready.clear()
        latest, self._latest = self._latest, {}
        return latest


def relay_options(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The relay takes no CPU and prefers the head node (the one that lives as long as the cluster); where a
    node it runs on goes away, Ray restarts it elsewhere and retries the calls it missed."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
    head = [n["NodeID"] for n in nodes if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {})]
    if head:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(head[0], soft=True)
    return options


@dataclasses.dataclass
class _Submitted:
    task: Task
    ref: Any
    started: float
    attempts: int = 1


class RayBackend:
    """Submits each task to the cluster and polls for them; see the module docstring."""

    def __init__(self, ray: Any, progress: ProgressSink):
        self.ray = ray
        self._progress = progress
        self._running: dict[str, _Submitted] = {}
        self._relay: Any = None  # the ProgressRelay actor, made with the first task (False: none this run)
        self._take: Any = None  # its pending `take`

    def submit(self, task: Task) -> None:
        if self._relay is None:  # up before the first task starts, so no stage's first reports wait on it
            self._relay = self.ray.remote(ProgressRelay).options(**relay_options(self.ray.nodes())).remote()
            ready, _ = self.ray.wait([self._relay.ready.remote()], timeout=RELAY_START)
            if not ready:  # a cluster too busy to start it: the run goes on, without live progress
                self.ray.kill(self._relay)
                self._relay = False
        self._running[task.stage] = _Submitted(task, self._launch(task), time.perf_counter())

    def _launch(self, task: Task) -> Any:
        fn = self.ray.remote(max_calls=1)(run_on_node)
        options = task_options(task.placement, self.ray.nodes())
        return fn.options(**options).remote(task, self._relay or None)

    def poll(self, timeout: float | None) -> list[tuple[str, Outcome]]:
        """Wait for a task to end, or for progress (passed on; then no stage ended)."""
        if not self._running:
            return []
        if self._take is None and self._relay:
            self._take = self._relay.take.remote(30.0)
        by_ref = {s.ref: stage for stage, s in self._running.items()}
        waiting = [*by_ref, *([self._take] if self._take is not None else [])]
        ready, _ = self.ray.wait(waiting, num_returns=1, timeout=timeout)
        ended = []
        for ref in ready:
            if ref not in by_ref:
                self._pass_on_progress()
                continue
            stage = by_ref[ref]
            outcome = self._collect(stage, ref)
            if outcome is not None:
                del self._running[stage]
                ended.append((stage, outcome))
        return ended

    def _collect(self, stage: str, ref: Any) -> Outcome | None:
        from ray import exceptions as rx

        sub = self._running[stage]
        try:
            result = self.ray.get(ref)
        except (rx.NodeDiedError, rx.LocalRayletDiedError, rx.ObjectLostError) as exc:
            if sub.attempts <= NODE_RETRIES:  # the node went away: another matching node gets the stage
                sub.attempts += 1
                sub.ref = self._launch(sub.task)
                return None
            return Outcome(Status.FAILED, {}, f"node lost {sub.attempts} times: {type(exc).__name__}", self._age(sub))
        except rx.WorkerCrashedError:
            return Outcome(
                Status.FAILED, {}, "worker process died on its node (a crash in native code?)", self._age(sub)
            )
        except rx.TaskCancelledError:
            return Outcome(Status.INTERRUPTED, {}, "cancelled", self._age(sub))
        except rx.RayError as exc:
            return Outcome(Status.FAILED, {}, one_line(exc, 300), self._age(sub))
        return result if isinstance(result, Outcome) else Outcome(Status.FAILED, {}, f"the node returned {result!r}")

    def _pass_on_progress(self) -> None:
        take, self._take = self._take, None
        try:
            latest = self.ray.get(take)
        except Exception:  # noqa: BLE001 - progress is for the eye only; the relay's end is not the stage's
            self._relay = False
            return
        for stage, (done, total, desc) in latest.items():
            if stage in self._running:
                self._progress(stage, done, total, desc)

    @staticmethod
    def _age(sub: _Submitted) -> float:
        return time.perf_counter() - sub.started

    def cancel(self, stage: str) -> None:
        sub = self._running.pop(stage, None)
        if sub is not None:
            self.ray.cancel(sub.ref, force=True)

    def close(self) -> None:
        for stage in list(self._running):
            self.cancel(stage)
        if self._relay:
            try:
                self.ray.kill(self._relay)
            except Exception:  # noqa: BLE001 - the cluster may be gone already; the actor ends with the job
                pass
            self._relay = self._take = None
