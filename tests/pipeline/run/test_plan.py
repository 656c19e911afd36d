"""pipeline.run.plan.Planner called directly: each stage's decision and its reasons, and that planning runs nothing."""

from __future__ import annotations

import os

from harness import HEAD, Project

from pipeline.recipe.load import Recipe
from pipeline.run.plan import Planner


def test_a_fresh_cache_runs_the_roots_and_everything_below_waits(toy: Project) -> None:
    decisions = toy.plan(toy.load())
    assert {s: d.status for s, d in decisions.items()} == {
        "write": "run",
        "upper": "waits",
        "other": "run",
        "join": "waits",
    }
    assert decisions["write"].reasons == ("never built",)
    assert decisions["upper"].reasons == ("waits on write; may be cut off",)
    assert decisions["join"].reasons == ("waits on other, upper; may be cut off",)
    assert decisions["write"].key and decisions["upper"].key is None


def test_planning_runs_nothing_and_writes_no_record(toy: Project) -> None:
    toy.plan(toy.load())
    assert toy.runs() == []
    assert not list(toy.cache.glob("records/*/*")) and not list(toy.cache.glob("objects/*/*"))
    assert not (toy.root / "toy.lock").exists()


def test_after_a_run_every_stage_is_cached_with_its_record(toy: Project) -> None:
    recipe = toy.load()
    toy.run(recipe)
    decisions = toy.plan(recipe)
    assert {d.status for d in decisions.values()} == {"cached"}
    for d in decisions.values():
        assert d.reasons == () and d.record is not None and d.record.key == d.key


def test_a_param_change_is_named_with_old_and_new_values(toy: Project) -> None:
    toy.run(toy.load())
    edited = toy.load(
        HEAD + 'stages:\n  write: {uses: toy.write, with: {text: "abc\\n", repeat: 2}}\n'
        "  upper: {uses: toy.upper, from: write}\n  other: {uses: toy.write, with: {text: xyz}}\n"
        "  join:  {uses: toy.join, inputs: {a: upper, b: other}}\n"
    )
    decisions = toy.plan(edited)
    assert decisions["write"].status == "run"
    assert decisions["write"].reasons == ("param repeat: 1 -> 2",)
    assert decisions["other"].status == "cached"
    assert decisions["upper"].status == "waits"


def test_writing_a_default_out_changes_nothing(toy: Project) -> None:
    toy.run(toy.load())
    explicit = toy.load((toy.root / "toy.yaml").read_text().replace('text: "abc\\n"}', 'text: "abc\\n", repeat: 1}'))
    assert "repeat: 1" in (toy.root / "toy.yaml").read_text()
    assert {d.status for d in toy.plan(explicit).values()} == {"cached"}


def test_forced_stages_run_with_the_reason_forced(toy: Project) -> None:
    recipe = toy.load()
    toy.run(recipe)
    decisions = toy.plan(recipe, force=["upper"])
    assert decisions["upper"].status == "run" and decisions["upper"].reasons == ("forced",)
    assert decisions["write"].status == "cached" and decisions["other"].status == "cached"
    assert decisions["join"].reasons == ("waits on upper; may be cut off",)  # a forced rerun may change nothing
    everything = toy.plan(recipe, force_all=True)
    assert {s: d.status for s, d in everything.items()} == {
        "write": "run",
        "upper": "waits",
        "other": "run",
        "join": "waits",
    }
    assert everything["write"].reasons == everything["other"].reasons == ("forced",)


def test_an_unmet_requirement_is_unavailable_and_so_is_everything_below(toy: Project) -> None:
    recipe = toy.load(
        HEAD + "stages:\n  ok: {uses: toy.write}\n  engine: {uses: toy.gpu, from: ok}\n"
        "  after: {uses: toy.upper, from: engine}\n"
    )
    decisions = toy.plan(recipe)
    assert decisions["ok"].status == "run"
    assert decisions["engine"].status == "unavailable"
    assert decisions["engine"].reasons == ("needs an NVIDIA GPU (probed: no /dev/nvidia0): pip install '.[tensorrt]'",)
    assert decisions["after"].status == "unavailable"
    assert decisions["after"].reasons == ("needs engine, which cannot run here",)


def test_a_missing_or_corrupted_object_is_a_miss_naming_the_output(toy: Project) -> None:
    recipe = toy.load()
    toy.run(recipe)
    records = {s: d.record for s, d in toy.plan(recipe).items()}
    gone = toy.store.objects.path(records["write"].outputs["model"].digest)
    gone.unlink()
    damaged = toy.store.objects.path(records["other"].outputs["model"].digest)
    os.chmod(damaged, 0o644)
    damaged.write_text("not xyz at all")  # another size: the stat memo notices without rehashing
    decisions = toy.plan(recipe)
    assert decisions["write"].status == "run"
    assert decisions["write"].reasons == ("output out.txt missing in cache",)
    assert decisions["other"].status == "run"
    assert decisions["other"].reasons == ("output out.txt corrupted in cache",)


def test_a_damaged_member_of_a_directory_output_is_a_miss(toy: Project) -> None:
    recipe = toy.load()
    toy.run(recipe)
    records = {s: d.record for s, d in toy.plan(recipe).items()}
    member = toy.store.objects.manifest(records["join"].outputs["model"].digest)[0]["digest"]
    toy.store.objects.path(member).unlink()  # the same bytes as upper's output: asked with upper's record known
    join = Planner(recipe, toy.store).decide("join", {"upper": records["upper"], "other": records["other"]})
    assert join.status == "run"
    assert join.reasons == ("output joined corrupted in cache",)  # the manifest is there, a file it lists is not


def test_decide_computes_a_waiting_stage_once_its_parents_are_known(toy: Project) -> None:
    """The executor's path: below a stage that must run, `decide` again with the parent's record."""
    recipe = toy.load()
    toy.run(recipe)
    planner_decisions = toy.plan(recipe)
    planner = Planner(recipe, toy.store)
    assert planner.decide("upper", {}).status == "waits"
    known = {"write": planner_decisions["write"].record}
    upper = planner.decide("upper", known)
    assert upper.status == "cached" and upper.key == planner_decisions["upper"].key


def _file_and_data_recipe(toy: Project, seed: int) -> Recipe:
    return toy.load(
        HEAD + f"data:\n  calib: {{kind: synthetic, count: 4, seed: {seed}}}\nstages:\n"
        "  up: {uses: toy.upper, from: notes.txt}\n  d: {uses: toy.data, inputs: {data: data.calib}}\n"
    )


def test_an_edited_input_file_and_a_changed_dataset_are_named(toy: Project) -> None:
    (toy.root / "notes.txt").write_text("first")
    toy.run(_file_and_data_recipe(toy, seed=1))
    (toy.root / "notes.txt").write_text("second")
    decisions = toy.plan(_file_and_data_recipe(toy, seed=2))
    assert decisions["up"].status == "run"
    (reason,) = decisions["up"].reasons
    assert reason.startswith("input ") and reason.endswith("notes.txt changed")
    assert decisions["d"].status == "run" and decisions["d"].reasons == ("data.calib: spec.seed: 1 -> 2",)


def test_an_edited_input_file_is_named_as_the_recipe_wrote_it(toy: Project) -> None:
    (toy.root / "notes.txt").write_text("first")
    toy.run(_file_and_data_recipe(toy, seed=1))
    (toy.root / "notes.txt").write_text("second")
    assert toy.plan(_file_and_data_recipe(toy, seed=1))["up"].reasons == ("input notes.txt changed",)
