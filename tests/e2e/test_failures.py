"""Failures: bad recipes, failing stages, gates, unmet requirements, kills and concurrent runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import Project

HEAD = "name: toy\nplugins: [toystages]\n"

BAD_RECIPES = {
    "malformed": ("stages:\n  a: {uses: toy.write\n", 3, "malformed YAML"),
    "duplicate": (
        "stages:\n  a: {uses: toy.write}\n  a: {uses: toy.write}\n",
        3,
        "stages.a: duplicate key (first defined on line 2)",
    ),
    "unknown_kind": (
        HEAD + "stages:\n  a: {uses: toy.writ}\n",
        4,
        "unknown stage kind 'toy.writ' (did you mean 'toy.write'?)",
    ),
    "unknown_key": (HEAD + "stages:\n  a: {uses: toy.write, wiht: {}}\n", 4, "stages.a.wiht: unknown key"),
    "unknown_param": (
        HEAD + "stages:\n  a:\n    uses: toy.write\n    with:\n      txet: hi\n",
        7,
        "stages.a.with.txet: unknown key",
    ),
    "wrong_type": (
        HEAD + "stages:\n  a:\n    uses: toy.write\n    with: {repeat: many}\n",
        6,
        "stages.a.with.repeat: Input should be a valid integer",
    ),
    "bad_name": (HEAD + "stages:\n  a/b: {uses: toy.write}\n", 4, "stages.a/b: names must match [A-Za-z0-9_-]+"),
    "cycle": (
        HEAD + "stages:\n  a: {uses: toy.upper, from: b}\n  b: {uses: toy.upper, from: a}\n",
        4,
        "cycle: a -> b -> a",
    ),
    "dangling": (HEAD + "stages:\n  a: {uses: toy.upper, from: wirte}\n", 4, "stages.a.from: unknown stage 'wirte'"),
    "missing_file": (
        HEAD + "stages:\n  a: {uses: toy.upper, from: inputs/model.onnx}\n",
        4,
        "stages.a.from: missing file 'inputs/model.onnx'",
    ),
    "missing_input": (
        HEAD + "stages:\n  a: {uses: toy.upper}\n",
        4,
        "stages.a.inputs: kind toy.upper needs input 'model'",
    ),
    "bad_plugin": (
        "plugins: [no_such_module]\nstages:\n  a: {uses: toy.write}\n",
        1,
        "plugins: cannot import 'no_such_module'",
    ),
    "missing_data": (
        HEAD + "data:\n  d: {kind: npz, path: nope.npz}\nstages:\n  a: {uses: toy.data, inputs: {data: data.d}}\n",
        4,
        "data.d: FileNotFoundError",
    ),
    "factory_import": (
        HEAD + "stages:\n  a: {uses: toy.call, with: {fn: 'nopkg.mod:make'}}\n",
        None,
        "no module named 'nopkg'",
    ),
    "factory_submodule": (
        HEAD + "stages:\n  a: {uses: toy.call, with: {fn: 'userpkg.nosuch:make'}}\n",
        None,
        "no module named 'userpkg.nosuch'",
    ),
    "factory_name": (
        HEAD + "stages:\n  a: {uses: toy.call, with: {fn: 'userpkg.textgen:mkae'}}\n",
        None,
        "userpkg.textgen has no attribute 'mkae' (did you mean 'make'?)",
    ),
    "model_factory": (
        HEAD + "model:\n  factory: userpkg.textgen:mkae\n  tensors: {x: {shape: [1, 3]}}\n"
        "stages:\n  export: {uses: export.onnx}\n",
        4,
        "model.factory: AttributeError: userpkg.textgen has no attribute 'mkae'",
    ),
    "dim_typo": (
        HEAD + "model:\n  tensors:\n    x:\n      shape: [btch, 3]\n  dims:\n    batch: {min: 1, opt: 1, max: 4}\n"
        "stages:\n  a: {uses: toy.write}\n",
        6,
        "model.tensors.x.shape.0: dim 'btch' is not declared under model.dims (did you mean 'batch'?)",
    ),
    "data_kind": (
        HEAD + "data:\n  calib:\n    kind: synthetc\nstages:\n  a: {uses: toy.write}\n",
        5,
        "data.calib.kind: unknown kind 'synthetc' (did you mean 'synthetic'?) "
        "(kinds: images, npy, npz, python, synthetic)",
    ),
    "surgery_op": (
        HEAD + "stages:\n  w: {uses: toy.write}\n  a:\n    uses: onnx.surgery\n    from: w\n    with:\n"
        "      ops:\n        - cleanup\n        - remove_node: ''\n",
        11,
        "stages.a.with.ops.1.remove_node: String should have at least 1 character",
    ),
    "model_checkpoint": (
        HEAD + "model:\n  factory: userpkg.textgen:make\n  checkpoint: gone.pt\n  tensors: {x: {shape: [1, 3]}}\n"
        "stages:\n  export: {uses: export.onnx}\n",
        5,
        "model.checkpoint: cannot read checkpoint 'gone.pt'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_recipe_errors_are_one_line_with_file_and_line_and_write_nothing(project: Project, case: str) -> None:
    text, line, message = BAD_RECIPES[case]
    project.write_recipe(text, "bad.yaml")
    proc = project.cli("run", "bad.yaml")
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1, err
    assert message in err, err
    if line is not None:
        assert f"bad.yaml:{line}:" in err
    assert not project.cache.exists()
    assert not (project.root / "bad.lock").exists()


def test_stage_exception_is_one_line_with_log_and_publishes_nothing(project: Project) -> None:
    project.write_recipe(HEAD + "stages:\n  ok: {uses: toy.write}\n  bad: {uses: toy.fail, from: ok}\n")
    proc = project.cli("run", "toy.yaml", env={"COLUMNS": "60"})  # one line even in a narrow CI log
    assert proc.returncode == 1
    line = next(ln for ln in proc.stderr.splitlines() if "stage bad failed" in ln)
    assert "stage bad failed: ValueError: boom on purpose (log: " in line
    log = Path(line.split("(log: ")[1].rstrip(")"))
    assert "Traceback" in log.read_text() and "boom on purpose" in log.read_text()
    assert (log.parent.parent / "bad.workdir" / "out" / "never.txt").exists()  # kept for inspection
    refs = {p.stem for p in (project.cache / "refs" / "toy").glob("*.json")}
    assert refs == {"ok"}  # nothing recorded for the failed stage
    assert "bad" not in (project.root / "toy.lock").read_text()
    assert not (project.cache / "toy" / "bad").exists()


def test_keep_going_finishes_independent_branches(project: Project) -> None:
    project.write_recipe(
        HEAD + "stages:\n  bad: {uses: toy.fail}\n  after: {uses: toy.upper, from: bad}\n  ok: {uses: toy.write}\n"
    )
    proc = project.cli("run", "toy.yaml", "--json")
    assert proc.returncode == 1
    rows = {s["stage"]: s["status"] for s in json.loads(proc.stdout)["stages"]}
    assert rows == {"bad": "failed", "after": "not run", "ok": "not run"}
    table = proc.stderr[proc.stderr.index("run ") :].splitlines()  # the summary: a line per stage, 80 columns
    assert sum("not run" in line and "--keep-going" in line for line in table) == 2
    assert all(len(line) <= 80 for line in table if not line.startswith(("full figures", "outputs:"))), table
    proc = project.cli("run", "toy.yaml", "--keep-going", "--json")
    rows = {s["stage"]: s["status"] for s in json.loads(proc.stdout)["stages"]}
    assert proc.returncode == 1 and rows == {"bad": "failed", "after": "skipped", "ok": "ran"}


def test_failed_gate_exits_3(project: Project) -> None:
    project.write_recipe(HEAD + "stages:\n  check: {uses: toy.fail, with: {gate: true}}\n")
    proc = project.cli("run", "toy.yaml")
    assert proc.returncode == 3
    line = next(ln for ln in proc.stderr.splitlines() if "GATE FAILED" in ln)
    assert "GATE FAILED  stage check: logits: cosine 0.5 < 0.99 (reports: " in line, line
    kept = project.root / line.split("(reports: ")[1].split(")")[0]
    assert (kept / "never.txt").read_text() == "partial"  # what the stage wrote before its gate failed


def test_unavailable_stage_exits_4_unless_skipping_is_asked_for(project: Project) -> None:
    project.write_recipe(
        HEAD + "stages:\n  ok: {uses: toy.write}\n  engine: {uses: toy.gpu, from: ok}\n"
        "  after: {uses: toy.upper, from: engine}\n"
    )
    proc = project.cli("run", "toy.yaml")
    assert proc.returncode == 4
    assert "needs an NVIDIA GPU (probed: no /dev/nvidia0)" in proc.stderr
    plan = project.cli("plan", "toy.yaml")
    assert "unavailable" in plan.stdout and "needs engine" in plan.stdout
    proc = project.cli("run", "toy.yaml", "--skip-unavailable", "--json")
    rows = {s["stage"]: s["status"] for s in json.loads(proc.stdout)["stages"]}
    assert proc.returncode == 0 and rows == {"ok": "cached", "engine": "unavailable", "after": "skipped"}
    assert project.cli("status", "toy.yaml").returncode == 1
    assert project.cli("status", "toy.yaml", "--skip-unavailable").returncode == 0


@pytest.mark.parametrize("point", ["run:upper", "publish:upper", "locked:upper"])
def test_kill_at_fault_point_leaves_no_record_and_next_run_completes(project: Project, point: str) -> None:
    proc = project.cli("run", "toy.yaml", env={"PIPELINE_FAULT": point})
    assert proc.returncode != 0
    if point.startswith("run"):
        assert "worker process died (killed by signal 9)" in proc.stderr  # the worker died, the engine reported it
    else:
        assert proc.returncode == -signal.SIGKILL  # the engine itself was killed
    assert not (project.cache / "refs" / "toy" / "upper.json").exists()
    records = [json.loads(p.read_text())["stage"] for p in project.cache.glob("records/*/*.json")]
    assert "upper" not in records
    # The next run is not blocked by the dead holder's lock and cleans its work directory.
    done = project.cli("run", "toy.yaml", "--json")
    assert done.returncode == 0, done.stderr
    assert {s["stage"]: s["status"] for s in json.loads(done.stdout)["stages"]}["upper"] == "ran"
    assert not list((project.cache / "tmp").iterdir())
    assert project.cli("verify").returncode == 0


def test_two_concurrent_runs_both_succeed_and_build_each_stage_once(project: Project) -> None:
    project.write_recipe(
        HEAD + "stages:\n  slow: {uses: toy.write, with: {sleep: 1.5}}\n  up: {uses: toy.upper, from: slow}\n"
    )
    first = project.popen("run", "toy.yaml")
    time.sleep(0.7)
    second = project.popen("run", "toy.yaml")
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert sorted(project.runs()) == ["slow", "up"]
    assert "built by another run" in err1 + err2


def test_many_concurrent_runs_share_views_and_the_lock_file(project: Project) -> None:
    """Runs that update the same views (some with other params) and merge into one lock file at once."""
    project.write_recipe(
        HEAD
        + "stages:\n"
        + "".join(f"  s{i}: {{uses: toy.write, with: {{text: t{i}}}}}\n" for i in range(4))
        + "  join: {uses: toy.join, inputs: {a: s0, b: s1}}\n"
    )
    for _ in range(3):
        procs = [
            project.popen(
                "run", "toy.yaml", f"s{i % 4}", "join", *(["--set", f"stages.s0.with.text=v{i}"] if i >= 4 else [])
            )
            for i in range(6)
        ]
        results = [(p.communicate(timeout=120)[1], p.returncode)[::-1] for p in procs]
        assert all(code == 0 for code, _ in results), [err for code, err in results if code]
    assert set(project.lock()) == {"s0", "s1", "s2", "s3", "join"}  # no run's merge lost another's
    assert project.cli("run", "toy.yaml").returncode == 0
    assert (project.cache / "toy" / "s0" / "out.txt").read_text() == "t0"
    assert sorted(p.name for p in (project.cache / "toy" / "join").iterdir()) == ["joined"]  # no stray copies


def test_a_run_with_overrides_is_a_variant_beside_the_recipe(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    before = (project.root / "toy.lock").read_text()
    proc = project.cli("run", "toy.yaml", "--set", "stages.write.with.repeat=2")
    assert proc.returncode == 0 and "toy.lock left as it was" in proc.stderr
    assert (project.root / "toy.lock").read_text() == before
    assert (project.cache / "toy" / "write" / "out.txt").read_text() == "abc\n"  # the recipe's own view stands
    (variant,) = project.cache.glob("toy@*")
    assert (variant / "write" / "out.txt").read_text() == "abc\nabc\n"
    show = project.cli("show", "toy.yaml", "write", "--set", "stages.write.with.repeat=2")
    assert show.stdout.split("\t")[1].strip() == str(variant / "write" / "out.txt")
    assert project.cli("status", "toy.yaml").returncode == 0
    kept = project.cli("gc", "--keep-variants")
    assert "variant" not in kept.stdout and variant.exists()
    dropped = project.cli("gc")
    assert "1 --set variant(s)" in dropped.stdout, dropped.stdout
    assert not variant.exists() and not (project.cache / "refs" / variant.name).exists()
    assert project.cli("plan", "toy.yaml", "--json").stdout.count('"cached"') == 4  # gc kept the real build
    again = project.run_json("toy.yaml", "--set", "stages.write.with.repeat=2")[1]
    assert {s["stage"]: s["status"] for s in again["stages"]}["write"] == "ran"  # its objects were collected


def test_target_and_force_mistakes_are_usage_errors(project: Project) -> None:
    for args, message in (
        (("run", "toy.yaml", "uper"), "no stage 'uper' in the recipe (did you mean 'upper'?)"),
        (("status", "toy.yaml", "uper"), "no stage 'uper'"),
        (("run", "toy.yaml", "write", "--force", "join"), "--force join: not among the stages"),
    ):
        proc = project.cli(*args)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    assert not project.cache.exists()


def test_cache_dir_and_recipe_name_mistakes_are_one_line_usage_errors(project: Project, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    proc = project.cli("run", "toy.yaml", "--cache-dir", str(tmp_path / "afile"))
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == f"error: cache directory {tmp_path / 'afile'} is not a directory"
    )
    project.write_recipe(
        "name: objects\n" + HEAD.replace("name: toy\n", "") + "stages:\n  a: {uses: toy.write}\n", "bad.yaml"
    )
    proc = project.cli("run", "bad.yaml")
    assert proc.returncode == 2 and "bad.yaml:1: name: recipe name 'objects' is reserved" in proc.stderr


def test_in_process_failures_leave_the_traceback_in_the_named_log(project: Project) -> None:
    project.write_recipe(HEAD + "stages:\n  bad: {uses: toy.fail}\n")
    proc = project.cli("run", "toy.yaml", "--in-process")
    assert proc.returncode == 1
    log = Path(next(ln for ln in proc.stderr.splitlines() if "stage bad failed" in ln).split("(log: ")[1].rstrip(")"))
    assert "boom on purpose" in log.read_text() and "Traceback" in proc.stderr  # and on the terminal


def test_interrupt_exits_130_and_leaves_nothing_half_written(project: Project) -> None:
    project.write_recipe(HEAD + "stages:\n  slow: {uses: toy.write, with: {sleep: 20}}\n")
    proc = project.popen("run", "toy.yaml", ctrl_c=True)  # holds even when the suite runs with SIGINT ignored
    deadline = time.time() + 20
    while not list(project.cache.glob("tmp/*-slow-*")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not list(project.cache.glob("records/*/*.json"))
    assert not list(project.cache.glob("tmp/*"))


def test_a_timing_stage_holds_the_cpu_against_other_runs(project: Project, tmp_path: Path) -> None:
    """An exclusive stage in one run keeps another run's stages (same cache) from starting meanwhile."""
    timelog = tmp_path / "times"
    project.write_recipe(HEAD + "stages:\n  bench: {uses: toy.timed, with: {seconds: 2.0}}\n", "timed.yaml")
    project.write_recipe(HEAD + "stages:\n  quick: {uses: toy.write, with: {text: other}}\n", "quick.yaml")
    first = project.popen("run", "timed.yaml", env={"TOY_TIMELOG": str(timelog)})
    deadline = time.time() + 30
    while not (timelog.exists() and "bench" in timelog.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    second = project.cli("run", "quick.yaml", env={"TOY_TIMELOG": str(timelog)})
    first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "waiting quick: another run holds the CPU" in second.stderr
    started = dict(line.split() for line in timelog.read_text().splitlines())
    bench_end = float((project.cache / "toy" / "bench" / "timing.txt").read_text())
    assert float(started["quick"]) >= bench_end - 0.05


def test_install_hints_survive_the_terminal(project: Project) -> None:
    """`pip install '.[tensorrt]'` must print with its brackets (rich would read them as markup)."""
    project.write_recipe(HEAD + "stages:\n  engine: {uses: toy.gpu}\n")
    proc = project.cli("run", "toy.yaml")
    assert proc.returncode == 4
    assert "pip install '.[tensorrt]'" in proc.stderr
    assert "pip install '.[tensorrt]'" in project.cli("plan", "toy.yaml").stdout


def test_a_reader_that_leaves_early_gets_no_traceback(project: Project) -> None:
    """`pipeline stages --markdown | head -1`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "stages", "--markdown"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before it writes: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err, err


def test_plugin_kinds_are_described_with_their_recipe(project: Project) -> None:
    described = project.cli("stages", "toy.write", "--recipe", "toy.yaml")
    assert described.returncode == 0 and described.stdout.startswith("### `toy.write`")
    assert "| `repeat` | `int` | `1` | how many times |" in described.stdout
    unknown = project.cli("stages", "toy.write")
    assert unknown.returncode == 2 and "needs --recipe RECIPE" in unknown.stderr
