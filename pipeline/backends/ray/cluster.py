"""The Ray cluster as the driver sees it: the connection, what its nodes offer, and where a task goes.

Placement is plain data: `task_options` turns a task's `Placement` and the cluster's nodes (`ray.nodes()`)
into Ray task options, tested without a cluster. Ray is imported only when a first stage must run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pipeline.backends.worker import Placement
from pipeline.errors import UsageError, one_line

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


def task_options(needs: Placement, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """What a task needs (`Task.placement`) as Ray task options, given the cluster's nodes (`ray.nodes()`).

    A target is a label selector, plus one GPU when the labelled nodes have GPUs (a test cluster labels
    CPU-only nodes). A timing stage (`exclusive`) asks for every CPU of the largest matching node, so
    nothing else runs beside it there. Ray never retries on its own: `RayBackend` decides what a retry is.
    """
    accelerator = needs.accelerator
    matching = [
        n
        for n in nodes
        if n.get("Alive") and (accelerator is None or (n.get("Labels") or {}).get(LABEL) == accelerator)
    ]
    options: dict[str, Any] = {"num_cpus": needs.cpus, "max_retries": 0}
    if accelerator:
        options["label_selector"] = {LABEL: accelerator}
        if any(n.get("Resources", {}).get("GPU") for n in matching):
            options["num_gpus"] = 1
    if needs.exclusive:
        whole = max((int(n.get("Resources", {}).get("CPU", 0)) for n in matching), default=0)
        options["num_cpus"] = max(whole, options["num_cpus"])
    return options
