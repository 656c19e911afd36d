"""Hits, misses, early cutoff, key stability, corruption and views, through the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness import Project


def test_second_run_is_all_cached_and_runs_nothing(project: Project) -> None:
    first = project.cli("run", "toy.yaml")
    assert first.returncode == 0, first.stderr
    assert sorted(project.runs()) == ["join", "other", "upper", "write"]
    second, record = project.run_json("toy.yaml")
    assert second.returncode == 0, second.stderr
    assert sorted(project.runs()) == ["join", "other", "upper", "write"]  # run() not called again
    assert {s["stage"]: s["status"] for s in record["stages"]} == dict.fromkeys(
        ["write", "other", "upper", "join"], "cached"
    )
    rows = {s["stage"]: s for s in record["stages"]}
    assert rows["write"]["summary"] == {"chars": 4} and rows["write"]["built"].endswith("+00:00")
    # the summary table shows why a cached stage did not run and the figures it was built with
    lines = second.stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("write "))  # one line, then its figures
    assert "cached" in lines[at] and "unchanged, built" in lines[at] and lines[at + 1].strip() == "chars=4", (
        second.stderr
    )


def test_param_change_reruns_only_that_stage_and_dependents(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    proc, record = project.run_json("toy.yaml", "--set", "stages.write.with.repeat=2")
    assert proc.returncode == 0, proc.stderr
    assert project.runs()[4:] == ["write", "upper", "join"]
    rows = {s["stage"]: s for s in record["stages"]}
    assert rows["other"]["status"] == "cached"
    assert rows["write"]["reasons"] == ["param repeat: 1 -> 2"]


def test_early_cutoff_when_a_rerun_produces_identical_bytes(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    # A comment line changes write's output, but upper strips comments: its output is unchanged.
    proc, record = project.run_json("toy.yaml", "--set", 'stages.write.with.text="abc\\n# note\\n"')
    assert proc.returncode == 0, proc.stderr
    rows = {s["stage"]: s for s in record["stages"]}
    assert rows["write"]["status"] == "ran" and not rows["write"]["same_output_as_before"]
    assert rows["upper"]["status"] == "ran" and rows["upper"]["same_output_as_before"]
    assert rows["join"]["status"] == "cached"
    assert project.runs()[4:] == ["write", "upper"]


def test_keys_ignore_formatting_key_order_and_explicit_defaults(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    before = {k: v["key"] for k, v in project.lock().items()}
    project.write_recipe(
        "# reformatted, keys reordered, defaults written out\n"
        "stages:\n"
        "  join:\n    inputs:\n      b: other\n      a: upper\n    uses: toy.join\n"
        "  other:\n    with: {repeat: 1, text: xyz, sleep: 0.0}\n    uses: toy.write\n"
        "  upper:\n    from: write\n    uses: toy.upper\n    with: {strip_comments: true}\n"
        '  write:\n    uses: toy.write\n    with:\n      text: "abc\\n"\n'
        "plugins:\n  - toystages\n"
        "name: toy\n"
    )
    proc = project.cli("run", "toy.yaml")
    assert proc.returncode == 0, proc.stderr
    assert {k: v["key"] for k, v in project.lock().items()} == before
    assert len(project.runs()) == 4


def test_user_code_edit_reruns_the_stage_that_calls_it(project: Project) -> None:
    project.write_recipe(
        "name: toy\nplugins: [toystages]\nstages:\n"
        "  gen: {uses: toy.call, with: {fn: 'userpkg.textgen:make'}}\n"
        "  up: {uses: toy.upper, from: gen}\n"
    )
    assert project.cli("run", "toy.yaml").returncode == 0
    assert project.cli("run", "toy.yaml").returncode == 0
    assert project.runs() == ["gen", "up"]
    src = project.root / "userpkg" / "textgen.py"
    src.write_text(src.read_text().replace("generated", "GENERATED"))
    proc, record = project.run_json("toy.yaml")
    assert proc.returncode == 0, proc.stderr
    rows = {s["stage"]: s for s in record["stages"]}
    assert rows["gen"]["reasons"] == ["code: module userpkg.textgen changed"]
    assert rows["up"]["same_output_as_before"]  # upper-casing hides the edit: cut off below
    assert project.runs() == ["gen", "up", "gen", "up"]


def test_corrupted_object_is_detected_and_rebuilt(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    digest = project.lock()["upper"]["outputs"]["model"]["digest"]
    obj = project.cache / "objects" / digest[:2] / digest[2:]
    os.chmod(obj, 0o644)
    obj.write_text("CORRUPT")
    plan = project.cli("plan", "toy.yaml")
    assert "upper.txt corrupted in cache" in plan.stdout
    proc, record = project.run_json("toy.yaml")
    assert proc.returncode == 0, proc.stderr
    assert {s["stage"]: s["status"] for s in record["stages"]}["upper"] == "ran"
    assert obj.read_text() == "ABC"
    assert project.cli("verify").returncode == 0


def test_missing_object_is_rebuilt(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    digest = project.lock()["write"]["outputs"]["model"]["digest"]
    (project.cache / "objects" / digest[:2] / digest[2:]).unlink()
    proc, record = project.run_json("toy.yaml")
    assert proc.returncode == 0
    assert {s["stage"]: s["status"] for s in record["stages"]}["write"] == "ran"


def test_verify_reports_corruption_and_exits_1(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    digest = project.lock()["other"]["outputs"]["model"]["digest"]
    obj = project.cache / "objects" / digest[:2] / digest[2:]
    os.chmod(obj, 0o644)
    with open(obj, "a") as f:
        f.write("x")
    proc = project.cli("verify")
    assert proc.returncode == 1 and "1 corrupted" in proc.stdout


def test_views_are_read_only_copies_that_cannot_corrupt_objects(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    view = project.cache / "toy" / "upper" / "upper.txt"
    assert view.read_text() == "ABC" and not view.is_symlink()
    os.chmod(view, 0o644)
    view.write_text("edited by a user")
    assert project.cli("verify").returncode == 0  # the object is untouched
    assert project.cli("run", "toy.yaml").returncode == 0
    assert view.read_text() == "ABC"  # the view is restored
    shown = project.cli("show", "toy.yaml", "join")
    assert shown.returncode == 0 and str(project.cache / "toy" / "join" / "joined") in shown.stdout
    assert (project.cache / "toy" / "join" / "joined" / "sub" / "b.txt").read_text() == "xyz"


def test_lock_file_is_deterministic_and_status_tracks_it(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    lock = (project.root / "toy.lock").read_text()
    assert project.cli("status", "toy.yaml").returncode == 0
    assert project.cli("run", "toy.yaml", "--force").returncode == 0
    assert (project.root / "toy.lock").read_text() == lock
    stale = project.cli("status", "toy.yaml", "--set", "stages.other.with.text=new")
    assert stale.returncode == 1 and "param text: 'xyz' -> 'new'" in stale.stdout
    as_json = json.loads(project.cli("status", "toy.yaml", "--set", "stages.other.with.text=new", "--json").stdout)
    rows = {r["stage"]: r for r in as_json["stages"]}
    assert as_json["up_to_date"] is False and rows["other"]["reasons"] == ["param text: 'xyz' -> 'new'"]
    assert rows["write"] == {"stage": "write", "status": "up to date", "reasons": []}
    (project.root / "toy.lock").unlink()
    assert project.cli("status", "toy.yaml").returncode == 1  # built, but not recorded in a lock file


def test_targets_run_only_ancestors_and_force_reruns(project: Project) -> None:
    proc = project.cli("run", "toy.yaml", "upper")
    assert proc.returncode == 0, proc.stderr
    assert project.runs() == ["write", "upper"]
    assert project.cli("run", "toy.yaml", "--force", "upper").returncode == 0
    assert project.runs()[:2] == ["write", "upper"]
    assert sorted(project.runs()[2:]) == ["join", "other", "upper"]


def test_gc_keeps_what_locks_and_refs_reference(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    project.recipe.write_text(project.recipe.read_text().replace('text: "xyz"', 'text: "v2"'))
    assert project.cli("run", "toy.yaml").returncode == 0  # the lock and refs now name the v2 build
    objects = lambda: sorted(p.name for p in (project.cache / "objects").glob("??/*"))  # noqa: E731
    before = objects()
    dry = project.cli("gc", "--dry-run")
    assert dry.returncode == 0 and "would remove 2 objects" in dry.stdout, dry.stdout
    assert objects() == before
    assert project.cli("gc").returncode == 0
    assert len(objects()) == len(before) - 2
    proc, record = project.run_json("toy.yaml")
    assert {s["status"] for s in record["stages"]} == {"cached"}


def test_parallel_jobs_and_in_process_give_the_same_outputs(project: Project, tmp_path: Path) -> None:
    assert project.cli("run", "toy.yaml", "--jobs", "2").returncode == 0
    lock = project.lock()
    other = Project(project.root, tmp_path / "cache2", tmp_path / "runlog2")
    assert other.cli("run", "toy.yaml", "--in-process").returncode == 0
    assert other.lock() == lock


def test_dataset_file_edit_reruns_its_readers_only(project: Project) -> None:
    import numpy as np

    np.savez(project.root / "d.npz", input=np.zeros((4, 3), np.float32))
    project.write_recipe(
        "name: toy\nplugins: [toystages]\ndata:\n  d: {kind: npz, path: d.npz}\nstages:\n"
        "  read: {uses: toy.data, inputs: {data: data.d}}\n  other: {uses: toy.write}\n"
    )
    assert project.cli("run", "toy.yaml").returncode == 0
    assert (project.cache / "toy" / "read" / "data.txt").read_text() == "d npz True"
    np.savez(project.root / "d.npz", input=np.ones((4, 3), np.float32))
    proc, record = project.run_json("toy.yaml")
    rows = {s["stage"]: s for s in record["stages"]}
    assert rows["read"]["status"] == "ran" and rows["read"]["reasons"] == ["data.d: d.npz changed"]
    assert rows["other"]["status"] == "cached"


def test_damaged_refs_records_and_state_cost_a_rebuild_not_a_crash(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    ref = project.cache / "refs" / "toy" / "write.json"
    ref.write_text('{"key": 5}')
    key = project.lock()["upper"]["key"]
    (project.cache / "records" / key[:2] / f"{key[2:]}.json").write_text("{not json")
    (project.cache / "state.db").write_bytes(b"not a database")
    plan = project.cli("plan", "toy.yaml")
    assert plan.returncode == 0 and plan.stderr.count("warning: ignoring unreadable record") == 1, plan.stderr
    assert "Traceback" not in plan.stderr and "UserWarning" not in plan.stderr
    proc, record = project.run_json("toy.yaml")
    assert proc.returncode == 0, proc.stderr
    status = {s["stage"]: s["status"] for s in record["stages"]}
    assert status == {"write": "cached", "upper": "ran", "other": "cached", "join": "cached"}  # upper: same bytes
