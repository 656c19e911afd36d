"""Stages as Ray tasks on a cluster (`pipeline run --executor ray`).

A stage runs as a Ray task in a fresh worker process (`max_calls=1`: one
recipe's modules never stand in for another's). Nothing moves through a shared
filesystem: the task names its inputs by digest on the remote store, the node
fetches them, runs the kind and stores its outputs there, and returns their
digests; the recipe's folder (plugins, factories, dataset code, data files)
travels the same way, as one directory object the node fetches by digest.

Before it runs a kind, the node recomputes the kind's code digest and toolchain
and refuses when they differ from what the key was computed with, so a node
with another image never caches a result under someone else's key. The driver
writes (and signs) every record; nodes hold no signing key.

A stage that needs a GPU target is placed by Ray's label selector
(`ray.io/accelerator-type`); a target no node offers is `unavailable`, naming
what the cluster has. A node that dies mid-stage sends the stage to another
matching node (up to `NODE_RETRIES` times); a worker that crashes in native
code fails its stage, as with the local pool. A stage's progress reaches the
driver through `ProgressRelay`, an actor it long-polls beside its tasks. Ray is
imported only here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

from pipeline.backends import ProgressSink
from pipeline.backends.worker import Outcome, Task
from pipeline.errors import UsageError, one_line
from pipeline.status import Status

NODE_RETRIES = 2
PROGRESS_EVERY = 0.5  # seconds between a node's progress reports for one stage
RELAY_START = 60.0  # seconds the progress relay may take to start before a run goes on without it
LABEL = "ray.io/accelerator-type"
BUNDLE_SKIP_DIRS = {"__pycache__", "node_modules", ".git", ".venv", "venv"}


def connect(address: str | None) -> Any:
    """Connect this driver to the cluster (`auto`, `host:port` or `ray://host:10001`); a usage error, one line,
    when there is none."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install '.[ray]'") from None
    if ray.is_initialized():
        return ray
    where = address or os.environ.get("PIPELINE_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or "auto"
    _reachable(where)
    try:
        ray.init(address=where, logging_level=logging.ERROR, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot reach a Ray cluster at {where}: {one_line(str(exc), 200)}") from None
    return ray


def _reachable(where: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable HOST:PORT for minutes; a plain connect says so in seconds."""
    import socket

    if where == "auto" or "://" in where and not where.startswith("ray://"):
        return
    hostport = where.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"cannot reach a Ray cluster at {where}: {exc.strerror or exc}") from None


def cluster_accelerators(ray: Any) -> set[str]:
    """The accelerator types the cluster's live nodes offer (their `ray.io/accelerator-type` labels)."""
    types = set()
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        label = (node.get("Labels") or {}).get(LABEL)
        if label:
            types.add(label)
        for resource in node.get("Resources", {}):
            if resource.startswith("accelerator_type:"):
                types.add(resource.split(":", 1)[1])
    return types


def placement_problem(ray: Any, target: str) -> str | None:
    """Why no node of the cluster can take a stage for `target` (None when one can), naming what it has."""
    offered = cluster_accelerators(ray)
    if target in offered:
        return None
    return f"no node of the Ray cluster offers {target} (it has: {', '.join(sorted(offered)) or 'no accelerators'})"


def bundle_recipe_dir(root: Path, exclude: tuple[Path, ...]) -> Path:
    """A copy (hard links where possible) of what a recipe's folder holds for its stages: code, data, plugins;
    without the cache, hidden folders, bytecode and virtual environments. The caller stores it by digest."""
    import shutil
    import tempfile

    skip = {p.resolve() for p in exclude}
    dest = Path(tempfile.mkdtemp(prefix="pipeline-bundle-")) / "recipe"
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and d not in BUNDLE_SKIP_DIRS and (here / d).resolve() not in skip
        )
        for name in filenames:
            if name.startswith(".") or name.endswith(".pyc"):
                continue
            src = here / name
            target = dest / src.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, target)
            except OSError:
                shutil.copy2(src, target)
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def run_on_node(task: Task, bundle: str | None, expect: dict[str, Any], relay: Any = None) -> dict[str, Any]:
    """The Ray task: a fresh workspace on this node, the recipe's folder fetched by digest, the kind's code and
    toolchain checked against the key's, then the stage run as the local worker runs it, its progress sent
    to the driver's `ProgressRelay`."""
    import socket
    import tempfile

    from pipeline.backends.worker import execute, open_store

    _threads_as_on_the_driver(task.needs.get("threads"))
    scratch = Path(tempfile.mkdtemp(prefix=f"pipeline-{task.stage}-"))
    recipe_dir = task.recipe_dir
    if bundle is not None:
        recipe_dir = str(scratch / "recipe")
        open_store(task.store).fetch(bundle, True, Path(recipe_dir))
    local = dataclasses.replace(
        task,
        workspace=str(scratch / "ws"),
        log=str(scratch / "stage.log"),
        recipe_dir=recipe_dir,
        inputs={k: _relocate(v, task.recipe_dir, recipe_dir) for k, v in task.inputs.items()},
    )
    (scratch / "ws" / "out").mkdir(parents=True)
    node = os.environ.get("RAY_NODE_NAME") or socket.gethostname()
    try:
        import ray

        node = ray.get_runtime_context().get_node_id()[:12]
    except Exception:  # noqa: BLE001 - the node's name is for the record only
        pass
    problem = _image_problem(local, expect)
    if problem is not None:
        outcome = Outcome(Status.FAILED, {}, f"node {node}: {problem}")
    else:
        outcome = execute(local, _reporter(task.stage, relay))
    try:
        log = Path(local.log).read_text(errors="replace")
    except OSError:
        log = ""
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
    return {"outcome": outcome, "log": log, "node": node}


def _reporter(stage: str, relay: Any) -> Any:
    """A stage's progress callback on a node: to the relay, fire and forget, at most every PROGRESS_EVERY
    seconds (and always the last step)."""
    last = [0.0]

    def progress(done: float, total: float | None = None, desc: str = "") -> None:
        now = time.monotonic()
        if relay is None or (now - last[0] < PROGRESS_EVERY and (total is None or done < total)):
            return
        last[0] = now
        relay.report.remote(stage, done, total, desc)

    return progress


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


def _threads_as_on_the_driver(omp: str | None) -> None:
    """Ray caps OMP_NUM_THREADS at a task's CPUs; a stage must compute what the local worker computes (torch's
    training numerics depend on its thread count), so the driver's setting applies: unset is the library's
    default. Runs before the stage imports anything that reads it (a fresh process per task)."""
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp


def _relocate(value: Any, old: str, new: str) -> Any:
    """A path input or dataset under the recipe's folder on the driver, as it lies in this node's copy."""
    from pipeline.stage import DatasetInput

    if isinstance(value, DatasetInput):
        return dataclasses.replace(value, base_dir=Path(_relocate(str(value.base_dir), old, new)))
    if isinstance(value, (str, Path)) and old != new:
        try:
            return str(Path(new) / Path(value).relative_to(old))
        except ValueError:
            return value
    return value


def _image_problem(task: Task, expect: dict[str, Any]) -> str | None:
    """Why this node must not run the task under its key: other code for the kind, or another toolchain."""
    import importlib
    import sys

    from pipeline.cache.hashing import DigestMemo
    from pipeline.keys.compute import kind_code

    if task.recipe_dir not in sys.path:
        sys.path.insert(0, task.recipe_dir)
    try:
        kind = getattr(importlib.import_module(task.kind_module), task.kind_class)
    except Exception as exc:  # noqa: BLE001 - reported as the stage's failure
        return f"cannot import {task.kind_module}.{task.kind_class}: {type(exc).__name__}: {exc}"
    if "code" in expect:
        here = kind_code(kind, DigestMemo(None))
        if here != expect["code"]:
            differs = _first_difference(expect["code"], here)
            return f"its code for kind {kind.kind} differs from the driver's ({differs})"
    if "toolchain" in expect:
        here = kind().toolchain(kind.Params.model_validate(task.params))
        if here != expect["toolchain"]:
            diff = sorted(k for k in set(here) | set(expect["toolchain"]) if here.get(k) != expect["toolchain"].get(k))
            shown = ", ".join(f"{k} {expect['toolchain'].get(k)} -> {here.get(k)}" for k in diff[:3])
            return f"its toolchain differs from the key's ({shown})"
    params = kind.Params.model_validate(task.params)
    unmet = kind().unmet(params)
    if unmet:  # the node probes what it has: a result is never built on one GPU for another
        return unmet
    return None


def task_options(needs: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """What a stage needs (pipeline.Task.needs) as Ray task options, given the cluster's nodes (`ray.nodes()`).

    A target is a label selector, plus one GPU when the labelled nodes have GPUs (a test cluster labels
    CPU-only nodes). A timing stage (`exclusive`) asks for every CPU of the largest matching node, so
    nothing else runs beside it there. Ray never retries on its own: `RayBackend` decides what a retry is.
    """
    accelerator = needs.get("accelerator")
    matching = [
        n
        for n in nodes
        if n.get("Alive") and (accelerator is None or (n.get("Labels") or {}).get(LABEL) == accelerator)
    ]
    options: dict[str, Any] = {"num_cpus": needs.get("cpus", 1), "max_retries": 0}
    if accelerator:
        options["label_selector"] = {LABEL: accelerator}
        if any(n.get("Resources", {}).get("GPU") for n in matching):
            options["num_gpus"] = 1
    if needs.get("exclusive"):
        whole = max((int(n.get("Resources", {}).get("CPU", 0)) for n in matching), default=0)
        options["num_cpus"] = max(whole, options["num_cpus"])
    return options


def _first_difference(driver: dict[str, Any], node: dict[str, Any]) -> str:
    """The first module or distribution whose digest or version differs between two code closures."""
    for part in sorted(set(driver) | set(node)):
        a, b = driver.get(part), node.get(part)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            name = next(n for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n))
            return f"{part} {name}: {str(a.get(name, 'absent'))[:16]} -> {str(b.get(name, 'absent'))[:16]}"
        return f"{part} differs"
    return "no difference"


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
        self.nodes: dict[str, str] = {}  # stage -> the node that ran it
        self.logs: dict[str, str] = {}  # stage -> its log, brought back from the node
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
        options = task_options(task.needs, self.ray.nodes())
        bundle, expect = task.needs.get("bundle"), task.needs.get("expect", {})
        return fn.options(**options).remote(task, bundle, expect, self._relay or None)

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
        self.nodes[stage] = result["node"]
        self.logs[stage] = result["log"]
        return result["outcome"]

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
