"""A stage's trials are results in the cache: each under its own key, resumed after a kill, reused across budgets,
recomputed when anything they depend on changes or their stored object is damaged, listed in the run record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from harness import HEAD, Project
from pydantic import Field

from pipeline.cache.trials import trial_base
from pipeline.stage import OutputSpec, Params, Stage

RECIPE = HEAD + "stages:\n  search:\n    uses: toy.search\n    with: {points: [1, 2, 3], scale: 1, budget: 10}\n"


def _trials_computed(project: Project) -> list[str]:
    return [line.split(" ", 1)[1] for line in project.runs_raw() if line.startswith("search:trial")]


def _row(record: dict) -> dict:
    return next(s for s in record["stages"] if s["stage"] == "search")


def _run(project: Project, text: str) -> dict:
    project.write_recipe(text)
    proc, record = project.run_json("toy.yaml")
    assert proc.returncode == 0, proc.stderr
    return _row(record)


def test_trials_are_cached_resumed_and_keyed(project: Project) -> None:
    first = _run(project, RECIPE)
    assert first["status"] == "ran" and first["summary"]["best"] == 9
    assert first["trials"]["computed"] == 3 and first["trials"]["cached"] == 0
    assert [t["label"] for t in first["trials"]["list"]] == ["point 1", "point 2", "point 3"]
    assert _trials_computed(project) == ["1", "2", "3"]

    assert _run(project, RECIPE)["status"] == "cached"  # an identical rerun is a pure cache hit
    assert _trials_computed(project) == ["1", "2", "3"]

    # The budget is trial-neutral: the stage reruns, every trial comes from the cache.
    fewer = _run(project, RECIPE.replace("budget: 10", "budget: 2"))
    assert fewer["status"] == "ran" and fewer["trials"] == {**fewer["trials"], "computed": 0, "cached": 2}
    assert _trials_computed(project) == ["1", "2", "3"]

    # A new point computes only its own trial; a param in every trial's key recomputes them all.
    more = _run(project, RECIPE.replace("[1, 2, 3]", "[1, 2, 3, 4]"))
    assert (more["trials"]["computed"], more["trials"]["cached"]) == (1, 3)
    scaled = _run(project, RECIPE.replace("scale: 1", "scale: 2"))
    assert scaled["summary"]["best"] == 18 and scaled["trials"]["computed"] == 3
    assert _trials_computed(project) == ["1", "2", "3", "4", "1", "2", "3"]


def test_a_search_killed_after_its_first_trial_resumes_without_recomputing_it(project: Project) -> None:
    project.write_recipe(RECIPE)
    killed = project.cli("run", "toy.yaml", env={"PIPELINE_FAULT": "trial:search"})
    assert killed.returncode != 0 and "killed by signal 9" in killed.stderr
    assert _trials_computed(project) == ["1"]
    assert not (project.cache / "refs" / "toy" / "search.json").exists()  # the stage itself did not finish
    resumed = _row(project.run_json("toy.yaml")[1])
    assert (resumed["status"], resumed["trials"]["computed"], resumed["trials"]["cached"]) == ("ran", 2, 1)
    assert _trials_computed(project) == ["1", "2", "3"]  # trial 1 was not computed again
    assert project.cli("verify").returncode == 0


def test_a_damaged_trial_is_computed_again_never_served(project: Project) -> None:
    _run(project, RECIPE)
    records = sorted((project.cache / "trials").glob("*/*.json"))
    assert len(records) == 3
    damaged = next(r for r in records if json.loads(r.read_text())["label"] == "point 2")
    digest = json.loads(damaged.read_text())["digest"]
    manifest = json.loads((project.cache / "objects" / digest[:2] / digest[2:]).read_text())
    value = project.cache / "objects" / manifest[0]["digest"][:2] / manifest[0]["digest"][2:]
    os.chmod(value, 0o644)
    value.write_text("999")  # the object no longer matches its digest
    row = _run(project, RECIPE.replace("budget: 10", "budget: 9"))
    assert (row["trials"]["computed"], row["trials"]["cached"]) == (1, 2)
    assert row["summary"]["best"] == 9
    assert _trials_computed(project) == ["1", "2", "3", "2"]


def test_a_trial_whose_file_changed_or_a_forced_stage_computes_again(project: Project) -> None:
    (project.root / "table.txt").write_text("100")
    with_table = RECIPE.replace("budget: 10}", "budget: 10, table: table.txt}")
    assert _run(project, with_table)["summary"]["best"] == 109
    record = json.loads(next((project.cache / "trials").glob("*/*.json")).read_text())
    assert record["reads"] == {"file:table.txt": record["reads"]["file:table.txt"]} and record["base"]
    assert record["identity"] in ({"point": 1}, {"point": 2}, {"point": 3})
    (project.root / "table.txt").write_text("200")  # a file the trials read by path, in no key
    row = _run(project, with_table)
    assert row["status"] == "ran" and row["summary"]["best"] == 209
    assert (row["trials"]["computed"], row["trials"]["cached"]) == (3, 0)
    proc, record2 = project.run_json("toy.yaml", "--force", "search")
    forced = _row(record2)
    assert proc.returncode == 0 and (forced["trials"]["computed"], forced["trials"]["cached"]) == (3, 0)
    assert _trials_computed(project) == ["1", "2", "3"] * 3


def test_gc_keeps_trials_unless_asked(project: Project) -> None:
    _run(project, RECIPE)
    assert project.cli("gc").returncode == 0
    assert len(list((project.cache / "trials").glob("*/*.json"))) == 3
    _run(project, RECIPE.replace("budget: 10", "budget: 8"))
    assert _trials_computed(project) == ["1", "2", "3"]  # gc left them whole
    dropped = project.cli("gc", "--trials")
    assert dropped.returncode == 0 and "3 trial(s)" in dropped.stdout
    assert not list((project.cache / "trials").glob("*/*.json"))
    _run(project, RECIPE.replace("budget: 10", "budget: 7"))
    assert _trials_computed(project) == ["1", "2", "3", "1", "2", "3"]


def test_trial_base_leaves_out_only_the_neutral_params() -> None:
    comp = {"kind": "k", "params": {"budget": 3, "scale": 1}, "inputs": {"model": "d1"}}
    assert trial_base(comp, ("budget",)) == trial_base({**comp, "params": {"budget": 9, "scale": 1}}, ("budget",))
    assert trial_base(comp, ("budget",)) != trial_base({**comp, "params": {"budget": 3, "scale": 2}}, ("budget",))
    assert trial_base(comp, ("budget",)) != trial_base({**comp, "inputs": {"model": "d2"}}, ("budget",))


def test_trial_neutral_must_name_params(tmp_path: Path) -> None:
    class P(Params):
        budget: int = Field(1)

    with pytest.raises(TypeError, match="trial_neutral names no param budgett"):

        class Bad(Stage[P]):
            kind = "bad"
            outputs = {"model": OutputSpec("x")}
            trial_neutral = ("budgett",)
