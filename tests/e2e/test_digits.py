"""The digits recipe end to end: real data, real accuracy gates, a broken calibration that must fail,
and a calibration-image edit that re-quantizes without re-exporting."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from reciperun import copy_recipe, quick_timing, rows, run_recipe

QUICK = quick_timing("check_fp32", "check_int8")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_recipe(tmp_path_factory.mktemp("digits"), "digits_int8.yaml", "digits_plugin.py")


def run(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    return run_recipe(root, "digits_int8.yaml", *QUICK, *args)


def test_fp32_and_int8_pass_their_accuracy_gates(digits: Path) -> None:
    proc, record = run(digits)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = rows(record)
    fp32, int8 = r["check_fp32"]["summary"], r["check_int8"]["summary"]
    assert fp32["accuracy"] >= 0.9
    assert int8["accuracy"] >= fp32["accuracy"] - 0.01
    report = json.loads(Path(r["check_int8"]["outputs"]["report"]).read_text())
    assert report  # the report is an output with the figures behind the summary


def test_calibrating_on_one_zero_image_fails_the_accuracy_gate(digits: Path) -> None:
    proc, record = run(
        digits, "--set", "data.calib.python=digits_plugin:zeros", "--set", "data.calib.kwargs={count: 1}"
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "accuracy" in rows(record)["check_int8"]["error"]
    assert rows(record)["check_fp32"]["status"] == "cached"


def test_changing_one_calibration_image_requantizes_without_reexporting(digits: Path) -> None:
    from PIL import Image

    folder = digits / "calib_images"
    _write_images(folder, 40)
    calib = (
        "data.calib={kind: images, path: calib_images, "
        "preprocess: {resize: null, crop: null, mean: [0.0], std: [0.941], grayscale: true}}"
    )
    proc, record = run(digits, "--set", calib)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert rows(record)["quantize"]["status"] == "ran"
    one = folder / "3" / "003.png"
    Image.fromarray(np.full((8, 8), 120, np.uint8), mode="L").save(one)
    proc, record = run(digits, "--set", calib)
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


def test_keys_travel_between_machines_except_validation(digits: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two CI runners with different CPUs share training, export, simplify, quantize and IR builds (their
    keys name no machine); `validate`, whose verdict is measured on the machine (timings, and numerics
    that follow the ISA: bf16 where the CPU has it), is keyed by the CPU and reruns on each kind of runner."""
    from pipeline.cache import Cache
    from pipeline.recipe.graph import stage_graph
    from pipeline.recipe.load import load_recipe
    from pipeline.run.plan import Planner
    from pipeline.status import Status
    from stages.runtimes import cpu

    proc, record = run(digits)
    assert proc.returncode == 0, proc.stderr[-3000:]
    here = {name: row["status"] for name, row in rows(record).items()}
    assert set(here.values()) <= {"cached", "ran"}

    def plan_on(model: str, flags: set[str], cpus: int) -> dict[str, tuple[Status, str | None, tuple[str, ...]]]:
        monkeypatch.setattr(cpu, "_cpuinfo", lambda: (model, frozenset(flags)))
        monkeypatch.setattr(cpu, "available_cpus", lambda: cpus)
        recipe = load_recipe(digits / "digits_int8.yaml", QUICK[1::2])
        cache = Cache(digits / "cache")
        decisions = Planner(recipe, cache).plan(list(stage_graph(recipe).order))
        return {d.stage: (d.status, d.key, d.reasons) for d in decisions}

    a = plan_on("Intel(R) Xeon(R) Platinum 8480+", {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8"}, 8)
    b = plan_on("AMD EPYC 7763 64-Core Processor", {"avx2"}, 4)
    kinds = {name: node.kind.kind for name, node in load_recipe(digits / "digits_int8.yaml").stages.items()}
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


def test_a_fresh_runner_gets_engines_and_reports_from_the_remote(digits: Path, tmp_path: Path) -> None:
    """The CI flow on a real recipe: push a warm cache, then a runner with an empty cache is served
    everything; the engines and the reports come down, and `pipeline summary` has every report."""
    import os
    import sys

    proc, _ = run(digits)
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = (tmp_path / "remote").as_uri()
    base = {**os.environ, "PIPELINE_REMOTE": remote, "COLUMNS": "200"}

    def cli(*args: str, cache: str) -> subprocess.CompletedProcess:
        env = {**base, "PIPELINE_CACHE": str(digits / cache)}
        cmd = [sys.executable, "-m", "pipeline.cli.main", *args]
        return subprocess.run(cmd, cwd=digits, env=env, capture_output=True, text=True, timeout=600)

    pushed = cli("push", "digits_int8.yaml", *QUICK, cache="cache")
    assert pushed.returncode == 0, pushed.stderr
    fresh = cli("run", "digits_int8.yaml", *QUICK, "--json", cache="fresh-runner")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    record = json.loads(fresh.stdout)
    assert {r["stage"]: r["status"] for r in record["stages"]} == {r: "pulled" for r in rows(record)}
    local = {r["stage"] for r in record["stages"] if r["local"]}
    assert {"openvino_fp32", "openvino_int8", "check_fp32", "check_int8"} <= local, local
    assert "train" not in local, "intermediates stay on the remote"
    assert 0 < record["remote"]["downloaded"] < sum(p.stat().st_size for p in (tmp_path / "remote").rglob("*"))
    summary = cli("summary", "digits_int8.yaml", *QUICK, cache="fresh-runner")
    assert summary.returncode == 0, summary.stdout + summary.stderr
    assert "## check_int8 (validate)" in summary.stdout and "## check_fp32 (validate)" in summary.stdout
