"""The Keras digits recipe end to end: a Keras CNN trained by a plugin kind, converted by tf2onnx (then
simplified, quantized, built) and by OpenVINO's own frontend, every engine through digits_int8.yaml's gates,
the two converters agreeing with each other; then a rerun served entirely from the cache."""

from __future__ import annotations

import importlib.util
from typing import Callable

import pytest
from harness import Ran, quick_timing, rows

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None:  # not imported here
    pytest.skip("tensorflow and tf2onnx are the tensorflow extra", allow_module_level=True)

# The e2e conftest's `recipe_project` and `run_recipe` read these three.
RECIPE = "digits_keras.yaml"
FILES = ("digits_keras_plugin.py",)
QUICK = quick_timing("check_fp32", "check_int8", "check_direct")

pytestmark = pytest.mark.slow


def test_both_converters_pass_the_digits_gates_and_rerun_cached(run_recipe: Callable[..., Ran]) -> None:
    proc, record = run_recipe()
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = rows(record)
    assert r["train"]["summary"]["held_out_accuracy"] >= 0.9
    fp32, int8, direct = (r[s]["summary"] for s in ("check_fp32", "check_int8", "check_direct"))
    assert fp32["accuracy"] >= 0.9 and direct["accuracy"] >= 0.9
    assert int8["accuracy"] >= fp32["accuracy"] - 0.01
    assert r["convert"]["summary"]["check_max_abs"] < 1e-4 and r["convert_ov"]["summary"]["check_max_abs"] < 1e-4
    again = run_recipe()
    assert again[0].returncode == 0 and {s["status"] for s in again[1]["stages"]} == {"cached"}
    # Training again gives the same .keras bytes (no save date, no memory addresses): nothing below reruns.
    proc, record = run_recipe("--force", "train")
    r = rows(record)
    assert proc.returncode == 0 and r["train"]["status"] == "ran" and r["train"]["same_output_as_before"]
    assert all(s["status"] == "cached" for s in record["stages"] if s["stage"] != "train"), record["stages"]
