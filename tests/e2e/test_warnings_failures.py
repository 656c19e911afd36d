"""What a user reads is true: a stage's warnings reach the console, the run record and `pipeline summary`;
a failed stage is remembered as failed (with its reports), never reported as "never built"."""

from __future__ import annotations

import json

from harness import Project

RECIPE = (
    "name: toy\nplugins: [toystages, toydata]\n"
    "data:\n"
    "  nums: {kind: toy.lines, path: nums.txt}\n"
    "stages:\n"
    "  write: {uses: toy.write, with: {text: 'abc'}}\n"
    "  check: {uses: toy.check, inputs: {model: write, data: data.nums}, with: WITH}\n"
)
WARNING = "calibrated on 4 samples: INT8 scales from so few are unreliable (use 300 or more)"


def _setup(project: Project, with_: str = "{}") -> None:
    (project.root / "nums.txt").write_text("1\n2\n")
    project.write_recipe(RECIPE.replace("WITH", with_))


def test_a_warning_shows_under_its_row_in_the_record_and_in_the_summary_cached_or_not(project: Project) -> None:
    _setup(project, f"{{warn: ['{WARNING}']}}")
    for attempt in ("ran", "cached"):
        proc = project.cli("run", "toy.yaml", "--json", env={"COLUMNS": "80"})
        assert proc.returncode == 0, proc.stderr
        rows = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]}
        assert rows["check"]["status"] == attempt
        assert rows["check"]["warnings"] == [WARNING]
        assert "warnings" not in rows["write"]
        lines = proc.stderr.splitlines()
        summary = lines[next(i for i, line in enumerate(lines) if line.startswith("run ")) :]
        at = next(i for i, line in enumerate(summary) if line.startswith("check "))
        below = [line for line in summary[at + 1 : at + 3] if "warning:" in line]
        assert len(below) == 1 and below[0].strip().startswith("warning: calibrated on 4 samples")
        assert all(len(line) <= 80 for line in summary if "run.json" not in line and "outputs:" not in line)
    md = project.cli("summary", "toy.yaml")
    assert md.returncode == 0, md.stderr
    assert f"| check | toy.check | up to date | warning: {WARNING} |" in md.stdout


def test_a_failed_gate_is_remembered_with_its_report_and_runs_again(project: Project) -> None:
    _setup(project, f"{{fail: true, warn: ['{WARNING}']}}")
    proc = project.cli("run", "toy.yaml")
    assert proc.returncode == 3
    assert f"warning: {WARNING}" in proc.stderr  # the likely cause, beside the failure

    plan = {d["stage"]: d for d in json.loads(project.cli("plan", "toy.yaml", "--json").stdout)}
    assert plan["check"]["status"] == "run"
    failed = plan["check"]["failed"]
    assert failed["status"] == "gate failed" and failed["error"] == "gate failed: out: cosine 0.5 < 0.99"
    reason = plan["check"]["reasons"][0]
    assert reason.startswith("gate failed 20") and reason.endswith(" UTC: out: cosine 0.5 < 0.99")
    assert not any("never built" in r for r in plan["check"]["reasons"])
    table = project.cli("plan", "toy.yaml").stdout
    assert "gate failed, will run" in table and "never built" not in table

    status = project.cli("status", "toy.yaml", "--json")
    assert status.returncode == 1
    rows = {s["stage"]: s for s in json.loads(status.stdout)["stages"]}
    assert rows["check"]["status"] == "gate failed" and rows["check"]["reasons"][0] == reason

    md = project.cli("summary", "toy.yaml")
    assert md.returncode == 1
    assert "| check | toy.check | gate failed | gate failed 20" in md.stdout
    assert f"warning: {WARNING}" in md.stdout
    assert "## check (toy.check): gate failed" in md.stdout and "verdict: FAIL x1" in md.stdout
    assert "not built" not in md.stdout

    assert project.cli("run", "toy.yaml").returncode == 3  # a failure is not cached: it runs again
    assert project.runs() == ["write", "check", "check"]
    text = project.recipe.read_text().replace("fail: true", "fail: false")
    project.recipe.write_text(text)
    assert project.cli("run", "toy.yaml").returncode == 0
    plan = {d["stage"]: d for d in json.loads(project.cli("plan", "toy.yaml", "--json").stdout)}
    assert plan["check"]["status"] == "cached" and "failed" not in plan["check"]


def test_an_error_is_remembered_as_failed(project: Project) -> None:
    project.write_recipe("name: toy\nplugins: [toystages]\nstages:\n  boom: {uses: toy.fail}\n")
    assert project.cli("run", "toy.yaml").returncode == 1
    plan = json.loads(project.cli("plan", "toy.yaml", "--json").stdout)[0]
    assert plan["failed"]["status"] == "failed"
    assert plan["reasons"][0].endswith("ValueError: boom on purpose")
    assert plan["failed"]["reports"] == {}  # an error's partial outputs are not kept as reports


def test_plan_says_will_run_when_a_waiting_stages_own_inputs_changed(project: Project) -> None:
    _setup(project)
    assert project.cli("run", "toy.yaml").returncode == 0
    changed = project.cli("plan", "toy.yaml", "--json", "--set", "stages.write.with.text=xyz")
    plan = {d["stage"]: d for d in json.loads(changed.stdout)}
    assert plan["write"]["status"] == "run"
    assert plan["check"]["status"] == "waits"  # only its parent changed: it may be cut off
    both = project.cli(
        "plan", "toy.yaml", "--json", "--set", "stages.write.with.text=xyz", "--set", "stages.check.with.factor=2"
    )
    plan = {d["stage"]: d for d in json.loads(both.stdout)}
    assert plan["check"]["status"] == "run"
    assert plan["check"]["reasons"] == ["param factor: 1 -> 2", "after write"]
    (project.root / "nums.txt").write_text("1\n2\n3\n")  # its own data input
    data = project.cli("plan", "toy.yaml", "--json", "--set", "stages.write.with.text=xyz")
    plan = {d["stage"]: d for d in json.loads(data.stdout)}
    assert plan["check"]["status"] == "run"
    assert plan["check"]["reasons"] == ["data.nums: nums.txt changed", "after write"]
    table = project.cli("plan", "toy.yaml", "--set", "stages.write.with.text=xyz").stdout
    assert "may be cut off" not in table
