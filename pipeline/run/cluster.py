"""One run's use of a Ray cluster (`--executor ray`): the connection, the store nodes use, tasks as nodes see them.

The executor owns the loop; this owns what differs when stages run elsewhere.
Nodes share nothing with the driver but a store: the remote cache itself, or,
for a read-only (pull-request) run, a scratch prefix of it (`scratch/<run id>`)
that holds this run's intermediates, receives no record and is deleted when the
run ends (`gc --remote` removes what a killed run left). The cluster is contacted
only when a first stage must run: a fully cached run never connects.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import TYPE_CHECKING, Any

from pipeline.backends.worker import Task
from pipeline.cache.records import OutputRecord, StageRecord

if TYPE_CHECKING:
    from pipeline.backends import Backend, ProgressSink
    from pipeline.recipe.load import Recipe
    from pipeline.remote.store import Remote, RemoteRecord
    from pipeline.run.plan import Decision

SCRATCH = "scratch"


class ClusterRun:
    def __init__(self, remote: Remote, recipe: Recipe, cache_root: Any, run_id: str, address: str | None):
        from pipeline.remote.objects import RemoteObjects
        from pipeline.remote.store import Remote

        self.remote, self.recipe, self.address = remote, recipe, address
        self._cache_root = cache_root
        self.scratch = remote.read_only
        # A read-only run writes nothing where others read: its nodes share a prefix of their own.
        self.store = Remote(f"{remote.url}/{SCRATCH}/{run_id}") if self.scratch else remote
        self.objects = RemoteObjects(self.store)  # the store as the nodes' object store, by digest
        self._ray: Any = None
        self._bundle: str | None = None  # the recipe's folder on the store, by digest

    def connect(self) -> Any:
        if self._ray is None:
            from pipeline.backends.ray.driver import connect

            self._ray = connect(self.address)
        return self._ray

    def backend(self, progress: ProgressSink) -> Backend:
        from pipeline.backends.ray.driver import RayBackend

        return RayBackend(self.connect(), progress)

    def placement(self, target: str) -> str | None:
        """Why no node can run a stage for `target` (None when one can): the planner's availability check."""
        from pipeline.backends.ray.driver import placement_problem

        return placement_problem(self.connect(), target)

    def task(self, task: Task, decision: Decision, owners: dict[str, StageRecord], local: Any) -> Task:
        """The task as a node runs it: its inputs made sure to be on the store (pushed from `local`, the
        driver's object store), the recipe's folder by digest, the key's code digest and toolchain for the
        node to check, and what it needs of a node."""
        from pipeline.backends.ray.driver import bundle_recipe_dir

        assert decision.components is not None
        for value in task.inputs.values():
            if isinstance(value, OutputRecord) and not self.objects.has(value.digest, value.is_dir):
                owner = next(r for r in owners.values() if value in r.outputs.values())
                self.store.push(owner, local, sign=False)
        if self._bundle is None:
            folder = bundle_recipe_dir(self.recipe.dir.resolve(), exclude=(self._cache_root,))
            self._bundle = self.objects.put(folder, is_dir=True)
            shutil.rmtree(folder.parent, ignore_errors=True)
        node = self.recipe.stages[task.stage]
        needs: dict[str, Any] = {
            "cpus": 1,
            "exclusive": node.kind.exclusive,
            "threads": os.environ.get("OMP_NUM_THREADS"),
            "bundle": self._bundle,
            "expect": {"code": decision.components["code"], "toolchain": decision.components["toolchain"]},
        }
        target = node.kind().hardware_target(node.params)
        if target:
            needs["accelerator"] = target
        return dataclasses.replace(task, store=self.store.url, needs=needs)

    def publish(self, record: StageRecord) -> RemoteRecord:
        """A node stored the outputs: the driver writes (and signs) the record on the remote; in scratch
        mode nothing is recorded there. Raises RemoteUnavailable or BadObject when the outputs are not there."""
        from pipeline.remote.store import RemoteRecord

        objects = self.store.named_objects(record)
        if not self.scratch:
            self.store.put_record(record, objects, sign=True)
        return RemoteRecord(record, objects, verified=True, signer="")

    def close(self) -> None:
        """Delete this run's scratch prefix (best effort: `gc --remote` removes what is left)."""
        if self.scratch and self._bundle is not None:
            self.store.delete_all()
