"""_metrics: every figure against a hand computation with a known answer; gates and default tolerances."""
from __future__ import annotations

import math

import numpy as np
import pytest

from stages import _metrics as M

# Four samples, three classes. Reference top-1: 0, 1, 2, 0; candidate top-1: 0, 1, 2, 1 -> agreement 3/4.
REF = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 4.0], [2.0, 1.0, 0.0]])
CAND = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 4.0], [1.0, 2.0, 0.0]])


def test_cosine_is_exactly_0_6_on_a_3_4_5_triangle() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    cand = np.array([[0.6, 0.8], [1.6, 1.2]])  # each at angle acos(0.6) from its reference
    assert M.cosine_per_sample(ref, cand) == pytest.approx([0.6, 0.6], abs=1e-12)
    assert M.cosine(ref, cand) == pytest.approx(0.6, abs=1e-12)
    # overall: one flattened vector each, computed by hand
    a, b = ref.ravel(), cand.ravel()
    assert M.cosine_overall(ref, cand) == pytest.approx(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), abs=1e-12)


def test_cosine_flattens_each_sample_and_handles_zero_rows() -> None:
    rng = np.random.default_rng(0)
    ref, cand = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 3))
    expected = [float(r.ravel() @ c.ravel() / (np.linalg.norm(r) * np.linalg.norm(c))) for r, c in zip(ref, cand)]
    assert M.cosine(ref, cand) == pytest.approx(np.mean(expected), abs=1e-12)
    zeros = np.zeros((2, 3))
    assert M.cosine(zeros, zeros) == 1.0  # two zero outputs agree
    assert M.cosine(zeros, np.ones((2, 3))) == 0.0  # a zero output does not agree with anything else


def test_max_and_mean_abs() -> None:
    diff = np.abs(CAND - REF)
    assert M.max_abs(REF, CAND) == 1.0 == diff.max()
    assert M.mean_abs(REF, CAND) == pytest.approx(2.0 / 12) == pytest.approx(diff.mean())


def test_centered_cosine_removes_the_reference_mean() -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((6, 4)) + 100.0  # a large constant dominates the raw outputs
    cand = np.full_like(ref, 100.0)  # a broken engine: right bias, ignores the input
    assert M.cosine(ref, cand) > 0.999  # plain cosine is fooled
    mean = ref.mean(axis=0)
    expected = np.mean([(r - mean) @ (c - mean) / (np.linalg.norm(r - mean) * np.linalg.norm(c - mean))
                        for r, c in zip(ref, cand)])
    assert M.centered_cosine(ref, cand) == pytest.approx(expected, abs=1e-12)
    assert M.centered_cosine(ref, cand) < 0.5
    assert M.centered_cosine(ref, ref + 1e-9) == pytest.approx(1.0, abs=1e-6)


def test_top1_is_exactly_0_75_and_top5() -> None:
    assert M.topk_agreement(REF, CAND, 1) == 0.75
    # by hand: share of samples whose reference argmax is the candidate argmax
    assert np.mean(REF.argmax(1) == CAND.argmax(1)) == 0.75
    assert M.topk_agreement(REF, CAND, 5) is None  # only 3 classes: top-5 does not apply
    ref = np.zeros((4, 6))
    ref[np.arange(4), [0, 1, 2, 3]] = 1.0  # reference top-1: 0, 1, 2, 3
    cand = np.tile(np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0]), (4, 1))  # candidate top-5: 0..4 for everyone
    cand[3] = [6.0, 5.0, 4.0, 0.0, 2.0, 1.0]  # sample 3: class 3 ranks last
    assert M.topk_agreement(ref, cand, 5) == 0.75
    assert M.topk_agreement(ref, cand, 1) == 0.25
    assert M.topk_agreement(np.zeros((4, 2, 2)), np.zeros((4, 2, 2))) is None  # not (samples, classes)


def test_accuracy_against_labels() -> None:
    labels = np.array([0, 1, 1, 0])
    assert M.accuracy(REF, labels) == 0.75  # argmax 0, 1, 2, 0
    assert M.accuracy(CAND, labels) == 0.5  # argmax 0, 1, 2, 1
    second = np.array([1, 2, 0, 1])  # each sample's second-ranked reference class
    assert M.accuracy(REF, second) == 0.0 and M.accuracy(REF, second, k=2) == 1.0
    figs = M.output_figures(REF, CAND, labels)
    assert figs["accuracy"] == 0.5 and figs["reference_accuracy"] == 0.75 and figs["accuracy_drop"] == 0.25
    assert figs["top1_agreement"] == 0.75 and figs["max_abs"] == 1.0 and figs["shape"] and figs["finite"]
    assert figs["output_scale"] == 4.0


def test_output_figures_flag_shape_and_non_finite() -> None:
    assert M.output_figures(REF, CAND[:, :2])["shape"] is False
    bad = CAND.copy()
    bad[1, 1] = np.nan
    figs = M.output_figures(REF, bad)
    assert figs["finite"] is False and math.isnan(figs["max_abs"])


def test_sensitivity_of_a_reference_that_always_says_the_same_class() -> None:
    ref = np.tile([5.0, 1.0, 0.0], (64, 1)) + np.random.default_rng(2).standard_normal((64, 3)) * 0.1
    s = M.sensitivity(ref)
    assert s.samples == 64 and s.distinct_top1 == 1 and s.top1_share == 1.0
    reason = M.insensitive_reason(s)
    assert reason == ("agreement figures cannot tell a good engine from a broken one: "
                      "all 64 inputs give the same top-1 class")
    assert {"top1_agreement_min", "top5_agreement_min"} <= M.uninformative_gates(s)
    assert "centered_cosine_min" not in M.uninformative_gates(s)


def test_sensitivity_spread_by_hand_and_tiny_spread_detected() -> None:
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((10, 5))
    centered = ref - ref.mean(axis=0)
    expected = np.sqrt(np.mean(centered**2)) / np.sqrt(np.mean(ref**2))
    s = M.sensitivity(ref)
    assert s.centered_spread == pytest.approx(expected) and s.distinct_top1 == len(set(ref.argmax(1)))
    assert M.insensitive_reason(s) is None and M.uninformative_gates(s) == set()
    flat = 1000.0 + rng.standard_normal((10, 5)) * 1e-3  # input barely matters; top-1 still varies
    s = M.sensitivity(flat)
    assert s.distinct_top1 > 1 and s.centered_spread < M.MIN_CENTERED_SPREAD
    assert "barely depend on the input" in M.insensitive_reason(s)
    assert "cosine_min" in M.uninformative_gates(s)


def test_gate_result_renders_and_says_what_would_pass() -> None:
    g = M.check_gate("cosine_min", "logits", 0.981, 0.99)
    assert not g.passed
    assert str(g) == "FAILED | logits | cosine 0.981 < 0.990 (would pass at 0.981)"
    assert g.failure() == "logits: cosine 0.981 < 0.990"
    assert g.would_pass == 0.981 and M.check_gate("cosine_min", "logits", 0.981, g.would_pass).passed
    ok = M.check_gate("centered_cosine_min", "logits", 0.99995, 0.9999)
    assert ok.passed and str(ok) == "passed | logits | centered cosine 0.99995 >= 0.99990"
    close = M.check_gate("cosine_min", "x", 0.999949, 0.99995)  # rounded down: never printed as passing
    assert close.describe() == "cosine 0.99994 < 0.99995"
    assert close.would_pass == 0.99994
    near_one = M.check_gate("cosine_min", "x", 0.99999994, 0.99)  # not printed as 1.000
    assert near_one.describe() == "cosine 0.999 >= 0.990"


def test_max_gate_would_pass_rounds_up() -> None:
    g = M.check_gate("max_abs", "out", 2.3456e-3, 1e-3)
    assert not g.passed and g.describe() == "max_abs 0.00235 > 0.001"
    assert g.would_pass >= 2.3456e-3 and M.check_gate("max_abs", "out", 2.3456e-3, g.would_pass).passed
    assert str(g).endswith("(would pass at 0.00235)")
    assert M.check_gate("max_abs", "out", 5e-5, 1e-4).passed


def test_missing_nan_and_bool_gates() -> None:
    assert not M.check_gate("max_abs", "o", float("nan"), 1.0).passed
    na = M.check_gate("accuracy_min", "o", None, 0.7, "no labels")
    assert not na.passed and na.would_pass is None and "n/a (no labels)" in str(na)
    assert M.check_gate("finite", "o", True, True).passed
    bad = M.check_gate("shape", "o", False, True, "(1, 3) vs reference (1, 4)")
    assert not bad.passed and str(bad) == "FAILED | o | shape check failed ((1, 3) vs reference (1, 4))"
    with pytest.raises(ValueError, match="unknown gate"):
        M.check_gate("cosine", "o", 1.0, 1.0)


def test_default_tolerances_by_precision() -> None:
    assert M.precision_class("fp32 (onnxruntime)") == M.precision_class("f32") == "fp32"
    assert M.precision_class("bf16") == M.precision_class("f16") == M.precision_class("fp16 (onnxruntime)") == "half"
    assert M.precision_class("int8 (bf16 exec)") == M.precision_class("int8 (onnxruntime)") == "int8"
    fp32, half, int8 = M.default_gates("f32"), M.default_gates("bf16"), M.default_gates("int8 (f32 exec)")
    assert fp32["centered_cosine_min"] > half["centered_cosine_min"] > int8["centered_cosine_min"]
    assert fp32["top1_agreement_min"] > half["top1_agreement_min"] > int8["top1_agreement_min"]
    assert fp32["finite"] and fp32["shape"] and fp32["max_abs_rel"] == 1e-4
    # max_abs relative to the output's scale; per-output overrides win; None switches a gate off
    assert M.resolve_gates(fp32, None, 20.0)["max_abs"] == pytest.approx(2e-3)
    resolved = M.resolve_gates(fp32, {"max_abs": 0.5, "top1_agreement_min": None}, 20.0)
    assert resolved["max_abs"] == 0.5 and "top1_agreement_min" not in resolved and "max_abs_rel" not in resolved
    assert "finite" not in M.resolve_gates(fp32, {"finite": False}, 1.0)
