"""The transformer recipe end to end: an encoder with a dynamic sequence length, validated over mixed
lengths in one stage, whose INT8 engine passes its classification and embedding gates when calibrated
properly (with model_type auto finding the attention) and fails both when calibrated on one blank
sequence or quantized as if it were a CNN."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import pytest
from harness import Ran, cpu_has_vnni, quick_timing, report, rows

# The e2e conftest's `recipe_project`, `run_recipe` and `good` read these three.
RECIPE = "digits_transformer_int8.yaml"
FILES = ("digits_transformer_plugin.py", "digits_plugin.py")
QUICK = quick_timing("check_fp32", "check_int8")
BLANK = ["--set", "data.calib.python=digits_transformer_plugin:constant", "--set", "data.calib.kwargs={count: 1}"]

pytestmark = pytest.mark.slow
VNNI = cpu_has_vnni()  # without it the INT8 engine saturates here and check_int8 fails (exit 3), honestly
OK = 0 if VNNI else 3


def test_trains_to_a_real_accuracy_and_exports_a_dynamic_sequence_dim(good: Ran) -> None:
    proc, record = good
    assert proc.returncode == OK, proc.stderr[-3000:]
    r = rows(record)
    assert r["train"]["summary"]["held_out_accuracy"] >= 0.9
    import onnx

    model = onnx.load(r["simplify"]["outputs"]["model"])
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims == {"tokens": ["batch", "seq", 8], "attention_mask": ["batch", "seq"]}


def test_one_validate_stage_covers_every_sequence_length(good: Ran) -> None:
    proc, record = good
    assert proc.returncode == OK, proc.stderr[-3000:]
    rep = report(rows(record)["check_fp32"])
    groups = rep["data"]["groups"]  # "tokens 12x8, attention_mask 12" -> samples
    assert rep["data"]["samples_used"] == sum(groups.values()) == 597
    assert {int(re.match(r"tokens (\d+)x8, attention_mask \1$", g).group(1)) for g in groups} == {6, 8, 12, 16, 24, 32}
    for output in ("logits", "embedding"):  # figures per length too
        assert set(rep["outputs"][output]["groups"]) == set(groups)


def test_int8_passes_its_classification_and_embedding_gates(good: Ran) -> None:
    proc, record = good
    r = rows(record)
    if not VNNI:  # the engine is not fit to ship on this CPU, and the gate says so
        assert proc.returncode == 3 and r["check_int8"]["status"] == "gate failed", proc.stderr[-3000:]
        failed = {(g["output"], g["metric"]) for g in report_of_failure(r["check_int8"]) if not g["passed"]}
        assert ("embedding", "cosine_min") in failed
        pytest.skip("INT8 passes these gates on a CPU with VNNI; this one has none (checked: the gate fails it)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fp32, int8 = report(r["check_fp32"]), report(r["check_int8"])
    assert fp32["outputs"]["logits"]["figures"]["accuracy"] >= 0.9
    assert int8["outputs"]["logits"]["figures"]["accuracy"] >= fp32["outputs"]["logits"]["figures"]["accuracy"] - 0.02
    assert int8["outputs"]["logits"]["role"] == "classification"
    assert int8["outputs"]["embedding"]["role"] == "embedding"
    gates = {(g["output"], g["metric"]): g for g in int8["gates"]}
    assert gates[("logits", "accuracy_drop_max")]["passed"]
    worst = gates[("embedding", "cosine_min")]
    assert worst["passed"] and worst["observed"] >= 0.98
    # the gate read the worst sentence, not the mean
    figures = int8["outputs"]["embedding"]["figures"]
    assert worst["observed"] == figures["cosine"] <= figures["cosine_mean"]


def test_blank_calibration_fails_the_classification_and_embedding_gates(
    run_recipe: Callable[..., Ran], good: Ran
) -> None:
    proc, record = run_recipe(*BLANK)
    assert proc.returncode == 3, proc.stderr[-3000:]
    r = rows(record)
    assert r["check_fp32"]["status"] == "cached" and r["train"]["status"] == "cached"
    error = r["check_int8"]["error"]
    assert "logits: accuracy drop" in error and "embedding: cosine" in error
    failed = {(g["output"], g["metric"]) for g in report_of_failure(r["check_int8"]) if not g["passed"]}
    assert {("logits", "accuracy_drop_max"), ("embedding", "cosine_min")} <= failed


def test_quantizing_without_transformer_mode_fails_the_same_gates(run_recipe: Callable[..., Ran], good: Ran) -> None:
    """The issue's sentence encoder at cosine 0.065: NNCF's default mode quantizes attention as it would a CNN."""
    proc, record = run_recipe("--set", "stages.quantize.with.model_type=none")
    assert proc.returncode == 3, proc.stderr[-3000:]
    r = rows(record)
    failed = {(g["output"], g["metric"]) for g in report_of_failure(r["check_int8"]) if not g["passed"]}
    assert {("logits", "accuracy_drop_max"), ("embedding", "cosine_min")} <= failed
    proc, record = run_recipe()  # and auto, which finds the attention, passes them (cached: the first run)
    assert proc.returncode == OK and "transformer" in rows(record)["quantize"]["summary"]["model_type"]


def report_of_failure(row: dict) -> list[dict]:
    """A failed gate's report stays under the run's folder (`kept`), since nothing is published."""
    return json.loads((Path(row["kept"]) / "report.json").read_text())["gates"]
