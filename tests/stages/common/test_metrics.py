"""_metrics: every figure against a hand computation with a known answer; gate verdicts, their printing and
the default gates from the gate table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stages.common import metrics as M
from stages.validation import gate_result as GR
from stages.validation import gates as G
from stages.validation.figures import output_entry
from stages.validation.numerics import Part

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
    expected = np.mean(
        [(r - mean) @ (c - mean) / (np.linalg.norm(r - mean) * np.linalg.norm(c - mean)) for r, c in zip(ref, cand)]
    )
    assert M.centered_cosine_per_sample(ref, cand).mean() == pytest.approx(expected, abs=1e-12)
    assert M.centered_cosine_per_sample(ref, cand).mean() < 0.5
    assert M.centered_cosine_per_sample(ref, ref + 1e-9).min() == pytest.approx(1.0, abs=1e-6)


def test_self_centered_cosine_centers_each_map_on_its_own_mean() -> None:
    rng = np.random.default_rng(4)
    ref = rng.random((1, 2, 5, 5))
    ref[:, 1] += 3.0  # two maps at very different levels
    assert M.self_centered_cosine_per_sample(ref, ref * 1.0)[0] == pytest.approx(1.0)
    assert M.self_centered_cosine_per_sample(ref, np.full_like(ref, 0.7))[0] == pytest.approx(0.0, abs=1e-12)
    levels = np.broadcast_to(ref.mean(axis=(2, 3), keepdims=True), ref.shape)  # each map's right constant
    assert M.self_centered_cosine_per_sample(ref, levels)[0] == pytest.approx(0.0, abs=1e-12)
    a, b = ref[0, 0].reshape(-1) - ref[0, 0].mean(), -ref[0, 0].reshape(-1) + ref[0, 0].mean()
    flipped = ref.copy()
    flipped[0, 0] = 2 * ref[0, 0].mean() - ref[0, 0]  # map 0 mirrored about its mean, map 1 exact
    c1 = ref[0, 1].reshape(-1) - ref[0, 1].mean()
    expected = (a @ b + c1 @ c1) / (np.sqrt(a @ a + c1 @ c1) * np.sqrt(b @ b + c1 @ c1))
    assert M.self_centered_cosine_per_sample(ref, flipped)[0] == pytest.approx(expected, abs=1e-12)
    vec = np.array([[1.0, 2.0, 3.0]])  # rank 2: the whole sample is centered
    assert M.self_centered_cosine_per_sample(vec, np.array([[3.0, 2.0, 1.0]]))[0] == pytest.approx(-1.0)


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
    part = Part("g", [REF], [CAND], None, [np.arange(4)], [labels])
    entry = output_entry([part], "classification", True, 0.5)
    figs = entry["figures"]
    assert figs["accuracy"] == 0.5 and figs["reference_accuracy"] == 0.75 and figs["accuracy_drop"] == 0.25
    assert figs["top1_agreement"] == 0.75 and figs["max_abs"] == 1.0 and figs["shape"] and figs["finite"]
    assert figs["output_scale"] == 4.0
    assert entry["counts"]["accuracy"] == {"successes": 2, "n": 4}
    assert entry["intervals"]["accuracy"] == pytest.approx(M.wilson(2, 4))


def test_non_finite_candidate_values_poison_the_error_figures() -> None:
    bad = CAND.copy()
    bad[1, 1] = np.nan
    mx, total, count = M.abs_error_per_sample(REF, bad)
    assert math.isnan(mx[1]) and not math.isnan(mx[0]) and list(count) == [3, 3, 3, 3]


def test_sensitivity_of_a_reference_that_always_says_the_same_class() -> None:
    ref = np.tile([5.0, 1.0, 0.0], (64, 1)) + np.random.default_rng(2).standard_normal((64, 3)) * 0.1
    s = M.sensitivity(ref)
    assert s.samples == 64 and s.distinct_top1 == 1 and s.top1_share == 1.0
    reason = M.insensitive_reason(s)
    assert reason == (
        "agreement figures cannot tell a good engine from a broken one: all 64 inputs give the same top-1 class"
    )
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
    g = GR.check_gate("cosine_min", "logits", 0.981, 0.99)
    assert not g.passed
    assert str(g) == "FAILED | logits | cosine 0.981 < 0.990 (would pass at 0.981)"
    assert g.failure() == "logits: cosine 0.981 < 0.990"
    assert g.would_pass == 0.981 and GR.check_gate("cosine_min", "logits", 0.981, g.would_pass).passed
    ok = GR.check_gate("centered_cosine_min", "logits", 0.99995, 0.9999)
    assert ok.passed and str(ok) == "passed | logits | centered cosine 0.99995 >= 0.99990"
    close = GR.check_gate("cosine_min", "x", 0.999949, 0.99995)  # rounded down: never printed as passing
    assert close.describe() == "cosine 0.99994 < 0.99995"
    assert close.would_pass == 0.99994
    near_one = GR.check_gate("cosine_min", "x", 0.99999994, 0.99)  # not printed as 1.000
    assert near_one.describe() == "cosine 0.999 >= 0.990"


def test_distinct_prints_a_pair_that_compares_as_the_numbers_do() -> None:
    assert GR.distinct(0.73, 1.0) == ("0.73", "1")  # short numbers that already differ stay short
    assert GR.distinct(1.049, 1.05) == ("1.049", "1.05")  # not 1.05 < 1.05
    assert GR.distinct(0.99989, 0.9999) == ("0.99989", "0.9999")  # not 0.9999 < 0.9999 nor 1 > 0.9999
    assert GR.distinct(1.05, 1.05) == ("1.05", "1.05")
    assert GR.distinct(0.99, 1.0, decimals=2) == ("0.99", "1.00")
    assert GR.distinct(0.998, 1.0, decimals=2) == ("0.998", "1.000")
    assert GR.distinct(1 - 1e-13, 1.0) == ("0.9999999999999", "1.0")  # past MAX_DIGITS: the exact forms
    assert GR.distinct(float("nan"), 0.5) == ("nan", "0.5")
    rng = np.random.default_rng(0)
    for _ in range(3000):
        threshold = float(rng.choice([0.9999, 0.99, 0.5, 1.0, 1e-3, 0.0123, 2.5]))
        observed = threshold + float(rng.choice([-1.0, 1.0]) * 10 ** rng.uniform(-16, -1)) * threshold
        sign = (observed > threshold) - (observed < threshold)
        for metric in (None, "cosine_min", "centered_cosine_min", "max_abs", "rel_error_max"):
            a, b = GR.distinct(observed, threshold, metric)
            assert ((float(a) > float(b)) - (float(a) < float(b))) == sign, (metric, observed, threshold, a, b)


def test_a_gate_line_never_prints_its_pair_equal_or_reversed() -> None:
    line = str(GR.check_gate("cosine_min", "logits", 0.99999999995, 0.9999999999))
    assert line == "passed | logits | cosine 0.99999999995 >= 0.9999999999"  # was 0.999999999 >= 1.000000000
    assert GR.check_gate("cosine_min", "logits", 0.99990000001, 0.9999).describe() == "cosine 0.99990000001 >= 0.9999"
    failed = GR.check_gate("cosine_min", "logits", 0.99989999999, 0.9999)
    assert failed.failure() == "logits: cosine 0.9998 < 0.9999"  # rounded down: never shown passing


def test_max_gate_would_pass_rounds_up() -> None:
    g = GR.check_gate("max_abs", "out", 2.3456e-3, 1e-3)
    assert not g.passed and g.describe() == "max_abs 0.00235 > 0.001"
    assert g.would_pass >= 2.3456e-3 and GR.check_gate("max_abs", "out", 2.3456e-3, g.would_pass).passed
    assert str(g).endswith("(would pass at 0.00235)")
    assert GR.check_gate("max_abs", "out", 5e-5, 1e-4).passed


def test_missing_nan_and_bool_gates() -> None:
    assert not GR.check_gate("max_abs", "o", float("nan"), 1.0).passed
    na = GR.check_gate("accuracy_min", "o", None, 0.7, "no labels")
    assert not na.passed and na.would_pass is None and "n/a (no labels)" in str(na)
    assert GR.check_gate("finite", "o", True, True).passed
    bad = GR.check_gate("shape", "o", False, True, "(1, 3) vs reference (1, 4)")
    assert not bad.passed and str(bad) == "FAILED | o | shape check failed ((1, 3) vs reference (1, 4))"
    with pytest.raises(ValueError, match="unknown gate"):
        GR.check_gate("cosine", "o", 1.0, 1.0)


def test_default_tolerances_by_precision() -> None:
    assert G.precision_class("fp32 (onnxruntime)") == G.precision_class("f32") == "fp32"
    assert G.precision_class("bf16") == G.precision_class("f16") == G.precision_class("fp16 (onnxruntime)") == "half"
    assert G.precision_class("int8 (bf16 exec)") == G.precision_class("int8 (onnxruntime)") == "int8"
    fp32, half, int8 = (G.default_gates(p, "classification") for p in ("f32", "bf16", "int8 (f32 exec)"))
    assert fp32["centered_cosine_min"] > half["centered_cosine_min"] > int8["centered_cosine_min"]
    assert fp32["top1_agreement_min"] > half["top1_agreement_min"] >= int8["top1_agreement_min"]
    assert fp32["finite"] and fp32["shape"] and fp32["max_abs_rel"] == 1e-4
    assert int8["accuracy_drop_max"] == 0.02  # on by default; skipped where the data has no labels
    # max_abs relative to the output's scale; per-output overrides win; None switches a gate off
    assert G.resolve_gates(fp32, None, 20.0)["max_abs"] == pytest.approx(2e-3)
    resolved = G.resolve_gates(fp32, {"max_abs": 0.5, "top1_agreement_min": None}, 20.0)
    assert resolved["max_abs"] == 0.5 and "top1_agreement_min" not in resolved and "max_abs_rel" not in resolved
    assert "finite" not in G.resolve_gates(fp32, {"finite": False}, 1.0)


def test_relative_error_per_sample_and_the_zero_rule() -> None:
    ref = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    cand = np.array([[3.0, 4.5], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    rel = M.rel_error_per_sample(ref, cand)
    assert rel[0] == pytest.approx(0.5 / 5.0) and rel[1] == 0.0 and rel[2] == np.inf
    assert rel[3] == pytest.approx(np.sqrt(2.0))
    cos = M.cosine_per_sample(ref, cand)
    assert cos[1] == 1.0 and cos[2] == 0.0 and cos[3] == 0.0  # the same zero rule as relative error


def test_iou_per_sample_by_hand() -> None:
    ref = np.zeros((3, 1, 2, 2))
    ref[0, 0, 0, :] = 1.0  # two pixels on
    cand = ref.copy()
    cand[0, 0, 1, 0] = 0.9  # one extra pixel: IoU 2/3
    cand[2, 0, 1, 1] = 0.7  # sample 2: reference empty, candidate one pixel: IoU 0
    iou = M.iou_per_sample(ref, cand, 0.5)
    assert iou[0] == pytest.approx(2 / 3) and iou[1] == 1.0 and iou[2] == 0.0  # both empty: 1.0
    assert M.iou_per_sample(ref, cand, 0.95)[0] == 1.0  # the threshold applies to the values as they are


def test_a_weight_leaves_positions_out_of_every_figure() -> None:
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((2, 5, 3))
    cand = ref + rng.standard_normal(ref.shape) * 1e-3
    weight = np.ones_like(ref)
    weight[1, 3:] = 0.0  # sample 1's last two positions are padding
    garbage = cand.copy()
    garbage[1, 3:] = 1e6
    for fn in (M.cosine_per_sample, M.rel_error_per_sample, M.centered_cosine_per_sample):
        assert fn(ref, garbage, weight) == pytest.approx(fn(ref, cand, weight), abs=1e-12)
    assert M.cosine_per_sample(ref, garbage)[1] < 0.5  # without the weight the garbage counts
    mx, total, count = M.abs_error_per_sample(ref, garbage, weight)
    assert mx[1] < 0.01 and list(count) == [15, 9]


def test_spread_worst_mean_and_percentile() -> None:
    v = np.arange(1, 101) / 100.0  # 0.01 .. 1.00
    worst, mean, p5 = M.spread(v, "min")
    assert worst == 0.01 and mean == pytest.approx(0.505) and p5 == pytest.approx(np.percentile(v, 5))
    worst, mean, p95 = M.spread(v, "max")
    assert worst == 1.0 and p95 == pytest.approx(np.percentile(v, 95))
    assert M.worst_indices(v, "min", 2) == [0, 1] and M.worst_indices(v, "max", 1) == [99]


def test_wilson_interval_against_a_hand_computation() -> None:
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.716..., half-width 0.2208...: [0.4902, 0.9433]
    lo, hi = M.wilson(8, 10)
    assert lo == pytest.approx(0.49016, abs=1e-4) and hi == pytest.approx(0.94332, abs=1e-4)
    lo, hi = M.wilson(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.72246, abs=1e-4)  # never above 1, unlike p +- z*se
    assert M.wilson(0, 0) is None


def test_paired_drop_interval_from_per_sample_differences() -> None:
    ref_ok = np.array([1, 1, 1, 1, 0, 1, 1, 1], bool)
    cand_ok = np.array([1, 0, 1, 1, 0, 1, 0, 1], bool)
    # by hand (Agresti-Min): b = 2 + 0.5 (reference right only), c = 0 + 0.5, m = 8 + 2
    # diff = 2/10 = 0.2; se = sqrt(3 - 4/10) / 10 = 0.16125; 0.2 +- 1.96 * 0.16125 = [-0.11604, 0.51604]
    lo, hi = M.paired_drop_interval(ref_ok, cand_ok)
    assert lo == pytest.approx(-0.11604, abs=1e-4) and hi == pytest.approx(0.51604, abs=1e-4)
    lo, hi = M.paired_drop_interval(ref_ok, ref_ok)  # no discordant sample: still an interval, not [0, 0]
    assert lo < 0 < hi and hi == pytest.approx(1.959964 * np.sqrt(1.0) / 10, abs=1e-5)
