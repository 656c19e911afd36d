"""A recipe's stage as the Task a worker runs (pipeline/backends/worker.py): plain, picklable data, with its inputs
resolved (a parent's output record, a dataset's spec and code, a path), so a worker needs no recipe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.backends.worker import Task, TrialSpec
from pipeline.cache.flock import KeyLock
from pipeline.cache.records import StageRecord
from pipeline.cache.trials import trial_base
from pipeline.recipe.load import Recipe
from pipeline.run.plan import inputs_without
from pipeline.stage import DatasetInput

if TYPE_CHECKING:
    from pipeline.run.plan import Decision


@dataclass
class RunningTask:
    """A stage whose task a backend runs: what the executor holds until it ends."""

    stage: str
    decision: Decision
    workspace: Path
    lock: KeyLock
    cpu: KeyLock  # shared; exclusive for stages that time things (across runs on this cache)
    log: Path
    started: float


def task_for(
    recipe: Recipe,
    name: str,
    known: dict[str, StageRecord],
    store: Path,
    workspace: Path,
    log: Path,
    components: dict[str, Any] | None = None,
    forced: bool = False,
    left_out: tuple[str, ...] = (),
) -> Task:
    """The task for stage `name`, whose parents' records are in `known`; with its key's `components`, its
    trials are kept in the cache at `store` (`pipeline.cache.trials`), all computed again when `forced`; the
    fan-in members read from `left_out` are left out (`Planner.without`)."""
    node = recipe.stages[name]
    inputs: dict[str, Any] = {}
    for input_name, ref in inputs_without(node.inputs, left_out).items():
        if ref.kind == "stage":
            inputs[input_name] = known[ref.target].outputs[ref.output]
        elif ref.kind == "data":
            data = recipe.datasets[ref.target]
            inputs[input_name] = DatasetInput(
                ref.target,
                data.spec.model_dump(mode="json"),
                recipe.dir,
                f"{data.kind.__module__}:{data.kind.__qualname__}",
            )
        else:
            inputs[input_name] = ref.target
    return Task(
        stage=name,
        kind_module=node.kind.__module__,
        kind_class=node.kind.__qualname__,
        params=node.params.model_dump(mode="python"),
        inputs=inputs,
        outputs={out_name: (spec.path, spec.is_dir) for out_name, spec in node.kind.outputs.items()},
        store=str(store),
        workspace=str(workspace),
        recipe_dir=str(recipe.dir.resolve()),
        model=recipe.model.model_dump(mode="json") if recipe.model else None,
        log=str(log),
        trials=TrialSpec(trial_base(components, node.kind.trial_neutral), str(store), forced) if components else None,
        own_process=node.kind.own_process,
    )


def take_locks(locks: Path, key: str, shared_cpu: bool) -> tuple[KeyLock, KeyLock] | str:
    """A key's lock and the CPU lock (shared, or exclusive for a stage that times things), both taken, or why
    another process holds one of them (then neither is held): concurrent runs on one cache never build a key
    twice, nor time on a busy CPU."""
    lock = KeyLock(locks / f"{key}.lock")
    if not lock.acquire(blocking=False):
        return f"another run (pid {lock.holder()}) is building it"
    cpu = KeyLock(locks / "cpu.lock", shared=shared_cpu)
    if not cpu.acquire(blocking=False):
        lock.release()
        return "another run holds the CPU" + (" (timing)" if shared_cpu else "")
    return lock, cpu
