"""Where a stage runs, as one seam (as Olive's systems and DVC's experiment executors): this machine
(`LocalSite`) or a Ray cluster (`ClusterSite`, `--executor ray`).

The run loop (pipeline/run/executor.py) only schedules; a site answers everything that differs: which
stages may run side by side, the CPU-lock rule, whether a stage's parents must be here before it runs,
how a task is prepared (its store, the side cache, what a node needs), the backend, where a finished
stage's objects and record land and whether its outputs come down, placement for a hardware target, and
what closing means. A site never decides whether a stage runs: the plan does.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.backends import Backend, ProgressSink, backend_for
from pipeline.backends.worker import Expected, Outcome, Placement, Task
from pipeline.cache import Cache
from pipeline.cache.records import OutputRecord, StageRecord, provenance
from pipeline.cache.views import update_view, view_if_local
from pipeline.faults import fault
from pipeline.keys.discovered import without_keyed
from pipeline.run.plan import Decision
from pipeline.stage import Stage

if TYPE_CHECKING:
    from pipeline.recipe.load import Recipe
    from pipeline.remote.objects import RemoteObjects
    from pipeline.remote.results import RemoteResults
    from pipeline.remote.store import Remote
    from pipeline.remote.sync import Uploads
    from pipeline.run.options import RunOptions

SCRATCH = "scratch"


class PublishError(Exception):
    """The worker's outputs are not where the record would say; the message is one line."""


class Site(Protocol):
    places_targets: bool  # a declared hardware target is placed here (else this machine's own check decides)

    def admits(self, kind: type[Stage[Any]], running: list[type[Stage[Any]]], jobs: int) -> bool:
        """Whether a stage of `kind` may start beside the stages of `running` (at most `jobs` at once)."""
        ...

    def cpu_lock_shared(self, kind: type[Stage[Any]]) -> bool:
        """Whether the stage takes this machine's CPU lock shared (exclusive: it times things here)."""
        ...

    def parents_here(self) -> bool:
        """Whether a stage's parents' outputs must be in the local cache before it runs."""
        ...

    def prepare(self, task: Task, decision: Decision, known: dict[str, StageRecord]) -> Task:
        """The task as this site runs it (`known`: the records of the stages settled so far)."""
        ...

    def backend(self, progress: ProgressSink) -> Backend:
        """Made when a first stage must run: a fully cached run starts no worker and contacts no cluster."""
        ...

    def placement(self, target: str) -> str | None:
        """Why no machine of this site can run a stage for `target` (None when one can)."""
        ...

    def publish(self, name: str, kind: type[Stage[Any]], decision: Decision, outcome: Outcome) -> StageRecord:
        """Check the outputs are stored, then write the record where this site keeps results; PublishError."""
        ...

    def views(self, cache: Cache, recipe: str, stage: str, record: StageRecord) -> dict[str, str]:
        """The stage's views, for what of its outputs is here."""
        ...

    def close(self) -> None:
        """After the last stage: wait for uploads, remove what only this run needed."""
        ...


def new_record(
    name: str, kind: type[Stage[Any]], decision: Decision, outcome: Outcome, run_id: str, objects: Any
) -> StageRecord:
    """The record of a stage that ran, once `objects` (the store the task used) holds every declared output."""
    outputs = outcome.outputs
    missing = [o.path for o in outputs.values() if not objects.has(o.digest, o.is_dir)]
    if set(outputs) != set(kind.outputs) or missing:
        raise PublishError(f"stage {name}: the worker did not store {', '.join(missing) or 'every output'}")
    fault("publish", name)
    assert decision.key is not None and decision.components is not None, "a stage runs with a known key"
    return StageRecord(
        key=decision.key,
        stage=name,
        kind=kind.kind,
        components=decision.components,
        outputs=outputs,
        summary=outcome.summary,
        seconds=round(outcome.seconds, 3),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        provenance=provenance(run_id, decision.components),
        discovered=without_keyed(outcome.discovered, decision.components),
        warnings=outcome.warnings,
    )


class LocalSite:
    """This machine: worker processes (or this process) over the local cache; each record written beside its
    objects, then uploaded on a background thread when a remote is writable."""

    places_targets = False

    def __init__(self, cache: Cache, recipe: str, run_id: str, in_process: bool, uploads: Uploads | None):
        self.cache, self.recipe, self.run_id = cache, recipe, run_id
        self.in_process, self.uploads = in_process, uploads

    def admits(self, kind: type[Stage[Any]], running: list[type[Stage[Any]]], jobs: int) -> bool:
        if any(k.exclusive for k in running) or (kind.exclusive and running):
            return False  # a timing stage holds the machine alone
        return len(running) < max(1, jobs)

    def cpu_lock_shared(self, kind: type[Stage[Any]]) -> bool:
        return not kind.exclusive  # across runs on this cache too

    def parents_here(self) -> bool:
        return True

    def prepare(self, task: Task, decision: Decision, known: dict[str, StageRecord]) -> Task:
        return dataclasses.replace(task, side_cache=str(self.cache.side))

    def backend(self, progress: ProgressSink) -> Backend:
        return backend_for(self.in_process, progress)

    def placement(self, target: str) -> str | None:
        return None  # never asked: this machine's own check (`Stage.unmet`) decides

    def publish(self, name: str, kind: type[Stage[Any]], decision: Decision, outcome: Outcome) -> StageRecord:
        record = new_record(name, kind, decision, outcome, self.run_id, self.cache.objects)
        self.cache.records.put(record)
        self.cache.memo.flush()
        self.cache.records.set_latest(self.recipe, name, record.key)
        if self.uploads is not None:
            self.uploads.submit(record)
        return record

    def views(self, cache: Cache, recipe: str, stage: str, record: StageRecord) -> dict[str, str]:
        return update_view(cache, recipe, stage, record)

    def close(self) -> None:
        if self.uploads is not None:
            self.uploads.wait()  # the CLI never exits with an upload in flight


class ClusterSite:
    """A Ray cluster. Nodes share nothing with the driver but a store: the remote cache itself, or, for a
    read-only (pull-request) run, a scratch prefix of it (`scratch/<run id>`) that holds this run's
    intermediates, receives no record and is deleted when the run ends (`gc --remote` removes what a killed
    run left). The driver writes (and signs) every record; a stage's outputs come down only when `wanted`
    (the targets and the engines), as for a pulled stage; the cluster is contacted only when a first stage
    must run or a target must be placed."""

    places_targets = True

    def __init__(
        self,
        remote: Remote,
        recipe: Recipe,
        cache: Cache,
        run_id: str,
        address: str | None,
        results: RemoteResults,
        wanted: set[str],
    ):
        from pipeline.remote.objects import RemoteObjects
        from pipeline.remote.results import RemoteResults
        from pipeline.remote.store import Remote

        self.recipe, self.cache, self.run_id, self.address, self.wanted = recipe, cache, run_id, address, wanted
        self.scratch = remote.read_only
        # A read-only run writes nothing where others read: its nodes share a prefix of their own.
        self.store = Remote(f"{remote.url}/{SCRATCH}/{run_id}") if self.scratch else remote
        self.objects: RemoteObjects = RemoteObjects(self.store)  # the store as the nodes' object store
        self.results = RemoteResults(self.store, cache, recipe.name) if self.scratch else results
        self._ray: Any = None
        self._bundle: str | None = None  # the recipe's folder on the store, by digest

    def admits(self, kind: type[Stage[Any]], running: list[type[Stage[Any]]], jobs: int) -> bool:
        return len(running) < max(1, jobs)  # a timing stage gets a node to itself there (task_options)

    def cpu_lock_shared(self, kind: type[Stage[Any]]) -> bool:
        return True  # nothing runs on this machine's CPU

    def parents_here(self) -> bool:
        return self.scratch  # nodes fetch from the remote itself; a scratch prefix gets its inputs from here

    def connect(self) -> Any:
        if self._ray is None:
            from pipeline.backends.ray.cluster import connect

            self._ray = connect(self.address)
        return self._ray

    def backend(self, progress: ProgressSink) -> Backend:
        from pipeline.backends.ray.driver import RayBackend

        return RayBackend(self.connect(), progress)

    def placement(self, target: str) -> str | None:
        from pipeline.backends.ray.cluster import placement_problem

        return placement_problem(self.connect(), target)

    def prepare(self, task: Task, decision: Decision, known: dict[str, StageRecord]) -> Task:
        """Its inputs made sure to be on the store, the recipe's folder by digest, what the key was computed
        with (the node checks it), and what it needs of a node."""
        from pipeline.backends.ray.cluster import bundle_recipe_dir
        from pipeline.remote.transfer import transfer

        assert decision.components is not None
        inputs = [v for v in task.inputs.values() if isinstance(v, OutputRecord)]
        transfer(inputs, self.cache.objects, self.objects)  # what a node reads that is only here
        if self._bundle is None:
            folder = bundle_recipe_dir(self.recipe.dir.resolve(), exclude=(self.cache.root,))
            self._bundle = self.objects.put(folder, is_dir=True)
            shutil.rmtree(folder.parent, ignore_errors=True)
        node = self.recipe.stages[task.stage]
        target = node.kind().target(node.params)
        return dataclasses.replace(
            task,
            store=self.store.url,
            bundle=self._bundle,
            trials=dataclasses.replace(task.trials, root=None) if task.trials else None,  # kept on the node
            expect=Expected(code=decision.components["code"], toolchain=decision.components["toolchain"]),
            placement=Placement(
                cpus=1,
                exclusive=node.kind.exclusive,
                accelerator=target.accelerator if target is not None else None,
                threads=os.environ.get("OMP_NUM_THREADS"),
            ),
        )

    def publish(self, name: str, kind: type[Stage[Any]], decision: Decision, outcome: Outcome) -> StageRecord:
        """A node stored the outputs on the store: the driver writes (and signs) the record there (not in
        scratch mode), then takes the outputs here when wanted (always from a scratch prefix)."""
        from pipeline.cache.objects import BadObject
        from pipeline.remote.results import Undeliverable
        from pipeline.remote.store import RemoteRecord, RemoteUnavailable
        from pipeline.remote.transfer import named_objects

        record = new_record(name, kind, decision, outcome, self.run_id, self.objects)
        try:
            objects = named_objects(record.outputs.values(), self.objects)
            if not self.scratch:
                self.store.put_record(record, objects, sign=True)
            found = RemoteRecord(record, objects, verified=True, signer="")
            return self.results.settle(name, found, here=name in self.wanted or self.scratch, pulled=False)
        except (RemoteUnavailable, BadObject, FileNotFoundError, Undeliverable) as exc:
            raise PublishError(f"stage {name}: {exc}") from None

    def views(self, cache: Cache, recipe: str, stage: str, record: StageRecord) -> dict[str, str]:
        return view_if_local(cache, recipe, stage, record)  # its outputs may stay on the remote

    def close(self) -> None:
        """Delete this run's scratch prefix (best effort: `gc --remote` removes what is left)."""
        if self.scratch and self._bundle is not None:
            self.store.delete_all()


def site_for(
    options: RunOptions,
    recipe: Recipe,
    cache: Cache,
    run_id: str,
    remote: Remote | None,
    results: RemoteResults | None,
    wanted: set[str],
) -> Site:
    """Where a run's stages run: this machine (uploading what it builds when a remote is writable), or a Ray
    cluster (`--executor ray`, which needs the remote as the nodes' store)."""
    if options.executor != "ray":
        uploads = None
        if remote is not None and not remote.read_only:
            from pipeline.remote.sync import Uploads

            uploads = Uploads(remote, cache.objects)
        return LocalSite(cache, recipe.name, run_id, options.in_process, uploads)
    assert remote is not None and results is not None
    return ClusterSite(remote, recipe, cache, run_id, options.ray_address, results, wanted)


def write_log(path: Path, outcome: Outcome) -> None:
    """A log another machine sent back with the outcome, where this run keeps its logs."""
    if outcome.log is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(outcome.log)
