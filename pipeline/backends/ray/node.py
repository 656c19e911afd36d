"""What runs on a cluster node: a stage's task in a fresh workspace there, as the local worker runs it.

The recipe's folder arrives as a directory object fetched by digest, path inputs are moved to where that
copy lies, and the worker checks the kind's code and toolchain against the key's (`Task.expect`) before it
runs anything. The node's name and the stage's log go back with the outcome.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipeline.backends.worker import Outcome, Task, execute, open_store, throttled
from pipeline.stage import DatasetInput

PROGRESS_EVERY = 0.5  # seconds between a node's progress reports for one stage


def run_on_node(task: Task, relay: Any = None) -> Outcome:
    """The Ray task: a fresh workspace on this node, the recipe's folder fetched by digest, then the stage
    run as the local worker runs it (which checks the kind against the key first), its progress sent to the
    driver's `ProgressRelay` at most every PROGRESS_EVERY seconds."""
    _threads_as_on_the_driver(task.placement.threads)
    scratch = Path(tempfile.mkdtemp(prefix=f"pipeline-{task.stage}-"))
    recipe_dir = task.recipe_dir
    if task.bundle is not None:
        recipe_dir = str(scratch / "recipe")
        open_store(task.store).fetch(task.bundle, True, Path(recipe_dir))
    local = dataclasses.replace(
        task,
        workspace=str(scratch / "ws"),
        log=str(scratch / "stage.log"),
        recipe_dir=recipe_dir,
        inputs={k: _relocate(v, task.recipe_dir, recipe_dir) for k, v in task.inputs.items()},
        side_cache=str(Path(tempfile.gettempdir()) / "pipeline-side-cache"),  # this node's, kept across tasks
    )
    (scratch / "ws" / "out").mkdir(parents=True)
    send = (lambda done, total, desc: relay.report.remote(task.stage, done, total, desc)) if relay else None
    outcome = execute(local, throttled(send, PROGRESS_EVERY) if send else lambda *_a, **_k: None)
    try:
        log = Path(local.log).read_text(errors="replace")
    except OSError:
        log = ""
    shutil.rmtree(scratch, ignore_errors=True)
    return dataclasses.replace(outcome, node=_node_name(), log=log)


def _node_name() -> str:
    """Ray's id of this node (short), else the host's name: for the record and the console only."""
    import socket

    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())[:12]
    except Exception:  # noqa: BLE001 - the node's name is for the record only
        return os.environ.get("RAY_NODE_NAME") or socket.gethostname()


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
    if isinstance(value, DatasetInput):
        return dataclasses.replace(value, base_dir=Path(_relocate(str(value.base_dir), old, new)))
    if isinstance(value, (str, Path)) and old != new:
        try:
            return str(Path(new) / Path(value).relative_to(old))
        except ValueError:
            return value
    return value
