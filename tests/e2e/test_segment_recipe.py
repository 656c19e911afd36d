"""The segmentation recipe end to end: a fully convolutional model with dynamic height and width, validated
at three canvas sizes in one stage, whose INT8 engine passes its dense-map gate (worst-sample IoU) when
calibrated properly and fails it when calibrated on one blank canvas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
from harness import Ran, quick_timing, report, rows

# The e2e conftest's `recipe_project`, `run_recipe` and `good` read these three.
RECIPE = "digits_segment_int8.yaml"
FILES = ("digits_segment_plugin.py", "digits_plugin.py")
QUICK = quick_timing("check_fp32", "check_int8")
BLANK = ["--set", "data.calib.python=digits_segment_plugin:constant", "--set", "data.calib.kwargs={count: 1}"]

pytestmark = pytest.mark.slow


def test_trains_to_a_real_iou_and_exports_dynamic_height_and_width(good: Ran) -> None:
    proc, record = good
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = rows(record)
    assert r["train"]["summary"]["held_out_iou"] >= 0.75  # against the clean ink masks, through the noise
    import onnx

    model = onnx.load(r["simplify"]["outputs"]["model"])
    shape = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert shape == ["batch", 1, "height", "width"]


def test_one_validate_stage_covers_every_canvas_size(good: Ran) -> None:
    proc, record = good
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = report(rows(record)["check_int8"])
    groups = rep["data"]["groups"]  # "image 1x16x16" -> samples
    assert rep["data"]["samples_used"] == sum(groups.values()) == 240
    assert set(groups) == {"image 1x16x16", "image 1x24x24", "image 1x32x32"}
    iou = {g: v["figures"]["iou"] for g, v in rep["outputs"]["mask"]["groups"].items()}
    assert set(iou) == set(groups) and min(iou.values()) == rep["outputs"]["mask"]["figures"]["iou"]


def test_int8_passes_its_dense_gates(good: Ran) -> None:
    proc, record = good
    assert proc.returncode == 0, proc.stderr[-3000:]
    int8 = report(rows(record)["check_int8"])
    assert int8["outputs"]["mask"]["role"] == "dense"
    gates = {(g["output"], g["metric"]): g for g in int8["gates"]}
    worst = gates[("mask", "iou_min")]
    assert worst["passed"] and worst["observed"] >= 0.85
    assert gates[("mask", "centered_cosine_min")]["passed"]
    assert not any(metric.startswith(("top1", "top5")) for _, metric in gates)  # no top-1 on a map


def test_blank_calibration_fails_the_iou_gate(run_recipe: Callable[..., Ran], good: Ran) -> None:
    proc, record = run_recipe(*BLANK)
    assert proc.returncode == 3, proc.stderr[-3000:]
    r = rows(record)
    assert r["check_fp32"]["status"] == "cached" and r["train"]["status"] == "cached"
    assert "mask: IoU" in r["check_int8"]["error"]
    gates = json.loads((Path(r["check_int8"]["kept"]) / "report.json").read_text())["gates"]
    assert ("mask", "iou_min") in {(g["output"], g["metric"]) for g in gates if not g["passed"]}
