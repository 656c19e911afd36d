"""pipeline/run/sites.py called directly: where a stage runs, as one seam. Each answer the run loop used to
branch on (which stages run side by side, the CPU lock, whether parents must be here, how a task is
prepared, where a record lands and whether outputs come down) is asked of a LocalSite and of a ClusterSite;
the cluster's answers need no Ray (it connects only for a backend or a placement)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.backends.worker import Outcome, Placement, Task
from pipeline.cache import Cache
from pipeline.cache.records import OutputRecord
from pipeline.recipe.load import Recipe, load_recipe
from pipeline.run.plan import Decision, Planner
from pipeline.run.sites import LocalSite, PublishError
from pipeline.run.tasks import task_for
from pipeline.status import Status

KINDS = """
from dataclasses import dataclass

from pipeline.stage import InputSpec, OutputSpec, Params, Stage


@dataclass(frozen=True)
class Gpu:
    accelerator: str

    def identity(self):
        return {"gpu": self.accelerator}

    def mismatch(self):
        return "no such GPU here"


class P(Params):
    text: str = "x"
    gpu: str | None = None


class Write(Stage[P]):
    kind = "site.write"
    outputs = {"out": OutputSpec("out.txt")}

    def target(self, params):
        return Gpu(params.gpu) if params.gpu else None

    def run(self, ctx):
        ctx.output("out").write_text(ctx.params.text)


class Time(Write):
    kind = "site.time"
    inputs = {"model": InputSpec()}
    exclusive = True
"""
RECIPE = """name: sites
plugins: [kinds]
stages:
  write: {uses: site.write}
  timed: {uses: site.time, inputs: {x: write}}
  engine: {uses: site.write, with: {gpu: H100}}
"""


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recipe:
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))  # the recipe's folder goes first while it loads
    (tmp_path / "kinds.py").write_text(KINDS)
    (tmp_path / "r.yaml").write_text(RECIPE.replace("inputs: {x: write}", "from: write"))
    return load_recipe(tmp_path / "r.yaml")


def _decided(recipe: Recipe, cache: Cache, name: str, known: dict | None = None) -> Decision:
    planner = Planner(recipe, cache)
    planner.prepare(list(recipe.stages))
    return planner.decide(name, known or {})


def _ran(cache: Cache, tmp_path: Path, text: str = "hello") -> Outcome:
    src = tmp_path / "work" / "out.txt"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(text)
    digest = cache.objects.put(src, False)
    return Outcome(Status.RAN, {"n": 1}, outputs={"out": OutputRecord(digest, False, len(text), "out.txt")})


def test_here_a_timing_stage_runs_alone_and_takes_the_cpu_lock_exclusively(recipe: Recipe, tmp_path: Path) -> None:
    site = LocalSite(Cache(tmp_path / "c"), recipe.name, "run1", in_process=True, uploads=None)
    write, timed = recipe.stages["write"].kind, recipe.stages["timed"].kind
    assert site.admits(write, [write], jobs=2) and not site.admits(write, [write, write], jobs=2)
    assert not site.admits(timed, [write], jobs=4) and not site.admits(write, [timed], jobs=4)
    assert site.admits(timed, [], jobs=1)
    assert site.cpu_lock_shared(write) and not site.cpu_lock_shared(timed)
    assert site.parents_here() and not site.places_targets


def test_here_a_task_gets_the_side_cache_and_a_record_lands_beside_its_objects(recipe: Recipe, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    site = LocalSite(cache, recipe.name, "run1", in_process=True, uploads=None)
    decision = _decided(recipe, cache, "write")
    task = task_for(recipe, "write", {}, cache.root, tmp_path / "ws", tmp_path / "log")
    assert site.prepare(task, decision, {}).side_cache == str(cache.side)
    record = site.publish("write", recipe.stages["write"].kind, decision, _ran(cache, tmp_path))
    assert record.key == decision.key and record.provenance["run_id"] == "run1"
    assert cache.records.latest(recipe.name, "write") == record
    assert (site.views(cache, recipe.name, "write", record)["out"]).endswith("out.txt")
    missing = dataclasses.replace(_ran(cache, tmp_path), outputs={})
    with pytest.raises(PublishError, match="stage write: the worker did not store every output"):
        site.publish("write", recipe.stages["write"].kind, decision, missing)


def _cluster(recipe: Recipe, tmp_path: Path, read_only: bool = False):  # noqa: ANN202
    pytest.importorskip("fsspec")
    from pipeline.remote.results import RemoteResults
    from pipeline.remote.store import Remote
    from pipeline.run.sites import ClusterSite

    cache = Cache(tmp_path / "c")
    remote = Remote((tmp_path / "remote").as_uri(), read_only=read_only)
    results = RemoteResults(remote, cache, recipe.name)
    return ClusterSite(remote, recipe, cache, "run1", None, results, wanted={"timed"}), cache, remote


def test_on_a_cluster_nodes_share_nothing_but_the_store_and_a_task_says_what_it_needs(
    recipe: Recipe, tmp_path: Path
) -> None:
    site, cache, remote = _cluster(recipe, tmp_path)
    write, timed = recipe.stages["write"].kind, recipe.stages["timed"].kind
    assert site.admits(timed, [write], jobs=2), "a timing stage gets a node of its own there"
    assert site.cpu_lock_shared(timed) and not site.parents_here() and site.places_targets
    here = LocalSite(cache, recipe.name, "run0", in_process=True, uploads=None)  # a parent built on this machine
    parent = here.publish("write", write, _decided(recipe, cache, "write"), _ran(cache, tmp_path))
    assert not site.objects.has(parent.outputs["out"].digest, False)
    decision = _decided(recipe, cache, "timed", {"write": parent})
    task = task_for(recipe, "timed", {"write": parent}, cache.root, tmp_path / "ws", tmp_path / "log")
    prepared = site.prepare(task, decision, {"write": parent})
    assert prepared.store == remote.url and prepared.bundle is not None and prepared.side_cache is None
    assert prepared.placement == Placement(cpus=1, exclusive=True, accelerator=None, threads=prepared.placement.threads)
    assert prepared.expect is not None and prepared.expect.code == decision.components["code"]
    assert site.objects.has(parent.outputs["out"].digest, False), "the input a node reads is on the store"
    engine = site.prepare(
        task_for(recipe, "engine", {}, cache.root, tmp_path / "ws2", tmp_path / "log2"),
        _decided(recipe, cache, "engine"),
        {},
    )
    assert engine.placement.accelerator == "H100"


def test_on_a_cluster_a_record_is_written_on_the_remote_and_outputs_come_down_only_when_wanted(
    recipe: Recipe, tmp_path: Path
) -> None:
    site, cache, remote = _cluster(recipe, tmp_path)
    write = recipe.stages["write"].kind
    decision = _decided(recipe, cache, "write")
    ran = _ran(cache, tmp_path)
    digest = ran.outputs["out"].digest
    from pipeline.remote.transfer import transfer

    transfer(ran.outputs.values(), cache.objects, site.objects)  # as a node stores them
    cache.objects.remove(digest)
    record = site.publish("write", write, decision, ran)
    assert remote.read_record(record.key) is not None, "the driver wrote the record on the remote"
    assert not cache.objects.has(digest, False) and "write" in site.results, "not wanted: held on the remote"
    assert site.views(cache, recipe.name, "write", record) == {}
    timed = recipe.stages["timed"].kind
    decided = _decided(recipe, cache, "timed", {"write": record})
    wanted = site.publish("timed", timed, decided, dataclasses.replace(ran, outputs=ran.outputs))
    assert cache.objects.has(digest, False) and cache.records.latest(recipe.name, "timed") == wanted


def test_a_read_only_cluster_run_keeps_its_intermediates_in_a_scratch_prefix_it_deletes(
    recipe: Recipe, tmp_path: Path
) -> None:
    site, cache, remote = _cluster(recipe, tmp_path, read_only=True)
    assert site.store.url == f"{remote.url}/scratch/run1" and site.parents_here()
    write = recipe.stages["write"].kind
    decision = _decided(recipe, cache, "write")
    task = task_for(recipe, "write", {}, cache.root, tmp_path / "ws", tmp_path / "log")
    assert site.prepare(task, decision, {}).store == site.store.url
    ran = _ran(cache, tmp_path)
    from pipeline.remote.transfer import transfer

    transfer(ran.outputs.values(), cache.objects, site.objects)
    record = site.publish("write", write, decision, ran)
    assert remote.read_record(record.key) is None, "a read-only run records nothing on the remote"
    assert cache.records.latest(recipe.name, "write") == record, "scratch results always come down"
    scratch = tmp_path / "remote" / "scratch" / "run1"
    assert scratch.is_dir()
    site.close()
    assert not scratch.exists()


def test_a_task_carries_typed_fields_and_no_environment(tmp_path: Path) -> None:
    task = Task("s", "m", "K", {}, {}, {}, str(tmp_path), str(tmp_path), str(tmp_path), None, "log")
    assert task.placement == Placement() and task.expect is None and task.bundle is None and task.side_cache is None


def test_on_a_cluster_an_input_that_stayed_on_the_remote_is_not_sent_again(recipe: Recipe, tmp_path: Path) -> None:
    """A parent taken from the remote by record only (its objects never came down): the node reads it there."""
    site, cache, remote = _cluster(recipe, tmp_path)
    write = recipe.stages["write"].kind
    ran = _ran(cache, tmp_path)
    from pipeline.remote.transfer import transfer

    transfer(ran.outputs.values(), cache.objects, site.objects)
    cache.objects.remove(ran.outputs["out"].digest)
    parent = site.publish("write", write, _decided(recipe, cache, "write"), ran)  # held: not wanted here
    decision = _decided(recipe, cache, "timed", {"write": parent})
    task = task_for(recipe, "timed", {"write": parent}, cache.root, tmp_path / "ws", tmp_path / "log")
    before = remote.transfer.downloaded
    assert site.prepare(task, decision, {"write": parent}).inputs["model"] == parent.outputs["out"]
    assert remote.transfer.downloaded == before and not cache.objects.has(ran.outputs["out"].digest, False)
