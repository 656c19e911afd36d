"""The digits recipe end to end: real data, real accuracy gates, a broken calibration that must fail,
and a calibration-image edit that re-quantizes without re-exporting."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from harness import Project, Ran, quick_timing, rows

# The e2e conftest's `recipe_project` and `run_recipe` read these three.
RECIPE = "digits_int8.yaml"
FILES = ("digits_plugin.py",)
QUICK = quick_timing("check_fp32", "check_int8")

pytestmark = pytest.mark.slow


def test_fp32_and_int8_pass_their_accuracy_gates(run_recipe: Callable[..., Ran]) -> None:
    proc, record = run_recipe()
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = rows(record)
    fp32, int8 = r["check_fp32"]["summary"], r["check_int8"]["summary"]
    assert fp32["accuracy"] >= 0.9
    assert int8["accuracy"] >= fp32["accuracy"] - 0.01
    report = json.loads(Path(r["check_int8"]["outputs"]["report"]).read_text())
    assert report  # the report is an output with the figures behind the summary


def test_calibrating_on_one_zero_image_fails_the_accuracy_gate(run_recipe: Callable[..., Ran]) -> None:
    proc, record = run_recipe("--set", "data.calib.python=digits_plugin:zeros", "--set", "data.calib.kwargs={count: 1}")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "accuracy" in rows(record)["check_int8"]["error"]
    assert rows(record)["check_fp32"]["status"] == "cached"


def test_changing_one_calibration_image_requantizes_without_reexporting(
    recipe_project: Project, run_recipe: Callable[..., Ran]
) -> None:
    from PIL import Image

    folder = recipe_project.root / "calib_images"
    _write_images(folder, 40)
    calib = (
        "data.calib={kind: images, path: calib_images, "
        "preprocess: {resize: null, crop: null, mean: [0.0], std: [0.941], grayscale: true}}"
    )
    proc, record = run_recipe("--set", calib)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert rows(record)["quantize"]["status"] == "ran"
    one = folder / "3" / "003.png"
    Image.fromarray(np.full((8, 8), 120, np.uint8), mode="L").save(one)
    proc, record = run_recipe("--set", calib)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = rows(record)
    assert r["quantize"]["status"] == "ran" and r["quantize"]["reasons"] == ["data.calib: calib_images changed"]
    assert r["export"]["status"] == "cached" and r["train"]["status"] == "cached"


def _write_images(folder: Path, count: int) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images[:count]
    for i, img in enumerate(images):
        (folder / str(i % 10)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 15).astype(np.uint8), mode="L").save(folder / str(i % 10) / f"{i:03d}.png")


def test_keys_travel_between_machines_except_validation(
    recipe_project: Project, run_recipe: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two CI runners with different CPUs share training, export, simplify, quantize and IR builds (their
    keys name no machine); `validate`, whose verdict is measured on the machine (timings, and numerics
    that follow the ISA: bf16 where the CPU has it), is keyed by the CPU and reruns on each kind of runner."""
    from pipeline.cache import Cache
    from pipeline.recipe.graph import stage_graph
    from pipeline.recipe.load import load_recipe
    from pipeline.run.plan import Planner
    from pipeline.status import Status
    from stages.runtimes import cpu

    proc, record = run_recipe()
    assert proc.returncode == 0, proc.stderr[-3000:]
    here = {name: row["status"] for name, row in rows(record).items()}
    assert set(here.values()) <= {"cached", "ran"}

    def plan_on(model: str, flags: set[str], cpus: int) -> dict[str, tuple[Status, str | None, tuple[str, ...]]]:
        monkeypatch.setattr(cpu, "_cpuinfo", lambda: (model, frozenset(flags)))
        monkeypatch.setattr(cpu, "available_cpus", lambda: cpus)
        recipe = load_recipe(recipe_project.root / RECIPE, QUICK[1::2])
        cache = Cache(recipe_project.cache)
        decisions = Planner(recipe, cache).plan(list(stage_graph(recipe).order))
        return {d.stage: (d.status, d.key, d.reasons) for d in decisions}

    a = plan_on("Intel(R) Xeon(R) Platinum 8480+", {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8"}, 8)
    b = plan_on("AMD EPYC 7763 64-Core Processor", {"avx2"}, 4)
    kinds = {name: node.kind.kind for name, node in load_recipe(recipe_project.root / RECIPE).stages.items()}
    validates = {name for name, kind in kinds.items() if kind == "validate"}
    assert validates == {"check_fp32", "check_int8"}
    for name in kinds:
        if name in validates:
            assert a[name][0] == b[name][0] == Status.RUN, (name, a[name], b[name])
            assert a[name][1] != b[name][1], "two CPUs must not share a validation verdict"
            assert any("cpu" in reason for reason in a[name][2]), a[name][2]
        else:
            assert a[name][0] == b[name][0] == Status.CACHED, (name, a[name], b[name])
            assert a[name][1] == b[name][1], f"{name}'s key must not name the machine"


def test_a_fresh_runner_gets_engines_and_reports_from_the_remote(
    recipe_project: Project, run_recipe: Callable[..., Ran], tmp_path: Path
) -> None:
    """The CI flow on a real recipe: push a warm cache, then a runner with an empty cache is served
    everything; the engines and the reports come down, and `pipeline summary` has every report."""
    proc, _ = run_recipe()
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = {"PIPELINE_REMOTE": (tmp_path / "remote").as_uri()}
    fresh_runner = dataclasses.replace(recipe_project, cache=tmp_path / "fresh-runner")

    pushed = recipe_project.cli("push", RECIPE, *QUICK, env=remote, timeout=600)
    assert pushed.returncode == 0, pushed.stderr
    fresh, record = fresh_runner.run_json(RECIPE, *QUICK, env=remote, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert {r["stage"]: r["status"] for r in record["stages"]} == {r: "pulled" for r in rows(record)}
    local = {r["stage"] for r in record["stages"] if r["local"]}
    assert {"openvino_fp32", "openvino_int8", "check_fp32", "check_int8"} <= local, local
    assert "train" not in local, "intermediates stay on the remote"
    assert 0 < record["remote"]["downloaded"] < sum(p.stat().st_size for p in (tmp_path / "remote").rglob("*"))
    summary = fresh_runner.cli("summary", RECIPE, *QUICK, env=remote, timeout=600)
    assert summary.returncode == 0, summary.stdout + summary.stderr
    assert "## check_int8 (validate)" in summary.stdout and "## check_fp32 (validate)" in summary.stdout
