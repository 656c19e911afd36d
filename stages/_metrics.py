"""Agreement figures between a candidate engine and its reference, and the gates built on them.

Pure numpy. Every figure takes arrays shaped (samples, ...) with the reference
first; a sample's values are flattened before per-sample figures are taken.

Why *centered* cosine: many networks (and every randomly initialised one)
produce outputs dominated by an input-independent component, the bias. Plain
cosine then stays near 1 for any engine that gets the bias right, even one
that ignores its input. Subtracting the reference's dataset mean removes that
component, so centered cosine measures agreement on what the input changes.
`sensitivity` and `insensitive_reason` say when the reference itself is too
flat for agreement figures to mean anything; the report warns, it never swaps
one metric for another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Mapping

import numpy as np

# Gate names, what they compare and how they print. "min" gates pass when
# observed >= threshold, "max" gates when observed <= threshold, "bool" gates
# when the check holds (threshold True switches them on).
GATES: dict[str, tuple[str, str]] = {
    "cosine_min": ("min", "cosine"),
    "centered_cosine_min": ("min", "centered cosine"),
    "max_abs": ("max", "max_abs"),
    "mean_abs": ("max", "mean_abs"),
    "top1_agreement_min": ("min", "top-1 agreement"),
    "top5_agreement_min": ("min", "top-5 agreement"),
    "accuracy_min": ("min", "accuracy"),
    "accuracy_drop_max": ("max", "accuracy drop"),
    "finite": ("bool", "finite"),
    "shape": ("bool", "shape"),
}
# The figure (in `output_figures`) each gate reads.
GATE_FIGURE = {
    "cosine_min": "cosine", "centered_cosine_min": "centered_cosine", "max_abs": "max_abs", "mean_abs": "mean_abs",
    "top1_agreement_min": "top1_agreement", "top5_agreement_min": "top5_agreement", "accuracy_min": "accuracy",
    "accuracy_drop_max": "accuracy_drop", "finite": "finite", "shape": "shape",
}
# Figures that lie in [0, 1] print with fixed decimals; error figures with significant digits.
_UNIT_INTERVAL = {"cosine_min", "centered_cosine_min", "top1_agreement_min", "top5_agreement_min", "accuracy_min",
                  "accuracy_drop_max"}

# Below this, the reference's centered outputs are too small next to its raw outputs
# for cosine or top-1 figures to reflect the input: the bias decides them.
MIN_CENTERED_SPREAD = 1e-3


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1) if x.ndim else x.reshape(1, 1)


def max_abs(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest |candidate - reference| over every element."""
    d = np.abs(_flat(candidate) - _flat(reference))
    return float(d.max()) if d.size else 0.0


def mean_abs(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean |candidate - reference| over every element."""
    d = np.abs(_flat(candidate) - _flat(reference))
    return float(d.mean()) if d.size else 0.0


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, m) arrays; two zero rows agree (1), one zero row does not (0)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    cos = np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    return np.clip(cos, -1.0, 1.0)


def cosine_per_sample(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's flattened outputs."""
    return _cosines(_flat(reference), _flat(candidate))


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Per-sample cosine, averaged over samples."""
    c = cosine_per_sample(reference, candidate)
    return float(c.mean()) if c.size else 1.0


def cosine_overall(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Cosine of the whole dataset's outputs flattened into one vector each."""
    return float(_cosines(_flat(reference).reshape(1, -1), _flat(candidate).reshape(1, -1))[0])


def centered_cosine(reference: np.ndarray, candidate: np.ndarray, center: np.ndarray | None = None) -> float:
    """Per-sample cosine after subtracting `center` (default: the reference's mean over samples) from both."""
    ref, cand = _flat(reference), _flat(candidate)
    mean = ref.mean(axis=0, keepdims=True) if center is None else np.asarray(center, np.float64).reshape(1, -1)
    c = _cosines(ref - mean, cand - mean)
    return float(c.mean()) if c.size else 1.0


def is_classifier(output: np.ndarray, k: int = 1) -> bool:
    """True for (samples, classes) outputs with at least max(k, 2) classes: where top-k means something."""
    return output.ndim == 2 and output.shape[1] >= max(k, 2)


def topk_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 1) -> float | None:
    """Share of samples whose reference top-1 class is among the candidate's top-k classes.

    With k=1 it is plain top-1 agreement. None when the output is not (samples, classes).
    """
    if not is_classifier(reference, k) or reference.shape != candidate.shape or not len(reference):
        return None
    ref_top1 = np.argmax(reference, axis=1)
    cand_topk = np.argsort(-np.asarray(candidate, np.float64), axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(cand_topk == ref_top1[:, None], axis=1)))


def accuracy(output: np.ndarray, labels: np.ndarray, k: int = 1) -> float | None:
    """Share of samples whose label is among the output's top-k classes; None if not a classifier output."""
    labels = np.asarray(labels).reshape(-1)
    if not is_classifier(output, k) or len(labels) != len(output) or not len(labels):
        return None
    topk = np.argsort(-np.asarray(output, np.float64), axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(topk == labels[:, None].astype(np.int64), axis=1)))


@dataclass(frozen=True)
class Sensitivity:
    """How much the reference's outputs depend on its inputs, over the dataset."""

    samples: int
    distinct_top1: int | None  # None when the output is not (samples, classes)
    top1_share: float | None  # share of samples in the most common top-1 class
    centered_spread: float  # RMS(reference - its mean) / RMS(reference); 0 when outputs ignore the input

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "distinct_top1": self.distinct_top1, "top1_share": self.top1_share,
                "centered_spread": self.centered_spread}


def sensitivity(reference: np.ndarray) -> Sensitivity:
    ref = _flat(reference)
    n = int(ref.shape[0])
    raw = float(np.sqrt(np.mean(ref**2))) if ref.size else 0.0
    centered = float(np.sqrt(np.mean((ref - ref.mean(axis=0, keepdims=True)) ** 2))) if ref.size else 0.0
    spread = centered / raw if raw > 0 else 0.0
    distinct = share = None
    if is_classifier(np.asarray(reference)) and n:
        counts = np.bincount(np.argmax(np.asarray(reference), axis=1))
        distinct, share = int(np.count_nonzero(counts)), float(counts.max() / n)
    return Sensitivity(n, distinct, share, spread)


def insensitive_reason(s: Sensitivity, min_spread: float = MIN_CENTERED_SPREAD) -> str | None:
    """Plain-language reason the reference cannot tell a good engine from a broken one, or None."""
    if s.samples > 1 and s.distinct_top1 == 1:
        return (f"agreement figures cannot tell a good engine from a broken one: "
                f"all {s.samples} inputs give the same top-1 class")
    if s.samples > 1 and s.centered_spread < min_spread:
        return (f"agreement figures cannot tell a good engine from a broken one: the reference's outputs barely "
                f"depend on the input (centered spread {s.centered_spread:.2g} of the output magnitude)")
    return None


def uninformative_gates(s: Sensitivity, min_spread: float = MIN_CENTERED_SPREAD) -> set[str]:
    """Gates whose figure the reference's insensitivity makes meaningless (report a warning, keep the gate)."""
    gates: set[str] = set()
    if s.samples > 1 and s.distinct_top1 == 1:
        gates |= {"top1_agreement_min", "top5_agreement_min"}
    if s.samples > 1 and s.centered_spread < min_spread:
        gates |= {"cosine_min", "top1_agreement_min", "top5_agreement_min"}
    return gates


def output_figures(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None,
                   ref_labels_ok: bool = True) -> dict[str, Any]:
    """Every figure for one output (arrays shaped (samples, ...)); None where a figure does not apply."""
    ref, cand = np.asarray(reference), np.asarray(candidate)
    fig: dict[str, Any] = {"shape": tuple(cand.shape) == tuple(ref.shape),
                           "finite": bool(np.isfinite(cand).all()) if cand.dtype.kind in "fc" else True,
                           "reference_finite": bool(np.isfinite(ref).all()) if ref.dtype.kind in "fc" else True}
    keys = ("max_abs", "mean_abs", "cosine", "cosine_overall", "centered_cosine", "top1_agreement",
            "top5_agreement", "accuracy", "reference_accuracy", "accuracy_drop", "output_scale")
    fig.update(dict.fromkeys(keys))
    if not fig["shape"]:
        return fig
    with np.errstate(invalid="ignore", over="ignore"):
        fig.update(max_abs=max_abs(ref, cand), mean_abs=mean_abs(ref, cand), cosine=cosine(ref, cand),
                   cosine_overall=cosine_overall(ref, cand),
                   centered_cosine=centered_cosine(ref, cand) if ref.ndim and ref.shape[0] > 1 else None,
                   top1_agreement=topk_agreement(ref, cand, 1), top5_agreement=topk_agreement(ref, cand, 5),
                   output_scale=float(np.max(np.abs(_flat(ref)))) if ref.size else 0.0)
    if labels is not None and ref_labels_ok:
        acc, ref_acc = accuracy(cand, labels), accuracy(ref, labels)
        fig.update(accuracy=acc, reference_accuracy=ref_acc,
                   accuracy_drop=None if acc is None or ref_acc is None else ref_acc - acc)
    return fig


# -- gates -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    """One gate on one output: `FAILED | logits | cosine 0.981 < 0.990 (would pass at 0.981)`."""

    metric: str  # a key of GATES
    output: str
    observed: float | bool | None  # None: the figure could not be computed (see note)
    threshold: float | bool
    passed: bool
    note: str = ""

    @property
    def direction(self) -> str:
        return GATES[self.metric][0]

    @property
    def label(self) -> str:
        return GATES[self.metric][1]

    @property
    def would_pass(self) -> float | None:
        """The tightest threshold this observation passes (rounded the safe way at display precision)."""
        if not _is_number(self.observed):
            return None
        return would_pass(self.metric, float(self.observed), self.digits)

    @property
    def digits(self) -> int:
        """Display precision: enough to show the threshold exactly (at least 3) and to tell the two apart."""
        if not (_is_number(self.threshold) and _is_number(self.observed)):
            return 3
        return pair_digits(self.metric, float(self.observed), float(self.threshold))

    def describe(self) -> str:
        """The figure against its threshold: `cosine 0.981 < 0.990`."""
        if self.direction == "bool":
            text = f"{self.label} ok" if self.passed else f"{self.label} check failed"
            return f"{text} ({self.note})" if self.note else text
        if not _is_number(self.observed):
            return f"{self.label} n/a" + (f" ({self.note})" if self.note else "")
        obs, thr = float(self.observed), float(self.threshold)
        op = (">=" if self.passed else "<") if self.direction == "min" else ("<=" if self.passed else ">")
        a, b = format_pair(self.metric, obs, thr)
        return f"{self.label} {a} {op} {b}"

    def __str__(self) -> str:
        status = "passed" if self.passed else "FAILED"
        text = f"{status} | {self.output} | {self.describe()}"
        if not self.passed and self.would_pass is not None:
            text += f" (would pass at {format_value(self.metric, self.would_pass, self.digits)})"
        return text

    def failure(self) -> str:
        """One line for GateFailed: `logits: cosine 0.981 < 0.990`."""
        return f"{self.output}: {self.describe()}"

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "output": self.output, "observed": self.observed, "threshold": self.threshold,
                "passed": self.passed, "would_pass": self.would_pass, "note": self.note, "text": str(self)}


def check_gate(metric: str, output: str, observed: float | bool | None, threshold: float | bool,
               note: str = "") -> GateResult:
    """Compare `observed` with `threshold` in the gate's direction; a missing or NaN figure fails."""
    if metric not in GATES:
        raise ValueError(f"unknown gate {metric!r} (known: {', '.join(GATES)})")
    direction = GATES[metric][0]
    if direction == "bool":
        passed = (not threshold) or bool(observed)
    elif not _is_number(observed) or math.isnan(float(observed)):
        passed = False
    elif direction == "min":
        passed = float(observed) >= float(threshold)
    else:
        passed = float(observed) <= float(threshold)
    return GateResult(metric, output, observed, threshold, passed, note)


def would_pass(metric: str, observed: float, digits: int = 3) -> float | None:
    """The tightest `metric` threshold that `observed` passes, rounded the safe way to `digits`."""
    direction = GATES[metric][0]
    if direction == "bool" or not math.isfinite(observed):
        return None
    return _round_safe(observed, direction, metric, digits)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool)


def display_digits(metric: str, threshold: float) -> int:
    """Decimals (unit-interval figures) or significant digits (error figures) that show `threshold` exactly."""
    if not math.isfinite(threshold) or threshold == 0:
        return 3
    d = Decimal(repr(float(threshold))).normalize()
    sign, digits, exponent = d.as_tuple()
    if metric in _UNIT_INTERVAL:
        return min(max(3, -int(exponent)), 9)
    return min(max(3, len(digits)), 9)


def figure_digits(metric: str, value: float) -> int:
    """Digits that show a figure without rounding it onto a bound: 0.99999994 is not printed as 1.000000."""
    digits = 6 if "cosine" in metric else 4
    if metric in _UNIT_INTERVAL and math.isfinite(value):
        while digits < 9 and value not in (0.0, 1.0) and float(f"{value:.{digits}f}") in (0.0, 1.0):
            digits += 1
    return digits


def format_value(metric: str, value: float, digits: int = 3) -> str:
    """Unit-interval figures with `digits` decimals; error figures with `digits` significant digits."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if metric in _UNIT_INTERVAL:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}g}"


def pair_digits(metric: str, observed: float, threshold: float) -> int:
    """`display_digits`, plus more while a differing observation would print equal to the threshold."""
    digits = display_digits(metric, threshold)
    while digits < 9 and observed != threshold and math.isfinite(observed):
        a, b = _format_pair(metric, observed, threshold, digits)
        if a != b:
            break
        digits += 1
    return digits


def format_pair(metric: str, observed: float, threshold: float) -> tuple[str, str]:
    """Observed (rounded the safe way, so the printed pair never contradicts the verdict) and threshold."""
    return _format_pair(metric, observed, threshold, pair_digits(metric, observed, threshold))


def _format_pair(metric: str, observed: float, threshold: float, digits: int) -> tuple[str, str]:
    shown = _round_safe(observed, GATES[metric][0], metric, digits) if math.isfinite(observed) else observed
    return format_value(metric, shown, digits), format_value(metric, threshold, digits)


def _round_safe(value: float, direction: str, metric: str, digits: int) -> float:
    """Round `value` to display precision, down for min gates and up for max gates.

    Decimal arithmetic on the shortest repr, so 0.99995 floors to 0.99995 at five
    decimals (binary floating point would give 0.99994) and never to 1.0000.
    """
    if not math.isfinite(value) or value == 0:
        return value
    d = Decimal(repr(float(value)))
    if metric in _UNIT_INTERVAL:
        quantum = Decimal(1).scaleb(-digits)
    else:
        quantum = Decimal(1).scaleb(d.adjusted() - digits + 1)
    rounded = d.quantize(quantum, rounding=ROUND_FLOOR if direction == "min" else ROUND_CEILING)
    return float(rounded)


# -- default tolerances ----------------------------------------------------------------------------

# Per precision class. `max_abs_rel` is relative to the output's scale (max |reference|):
# it becomes an absolute `max_abs` gate per output. Low-precision classes have no
# max_abs default: one outlier element says little there, cosine and agreement say more.
_DEFAULTS: dict[str, dict[str, float | bool]] = {
    "fp32": {"finite": True, "shape": True, "max_abs_rel": 1e-4, "centered_cosine_min": 0.9999,
             "top1_agreement_min": 0.99},
    "half": {"finite": True, "shape": True, "centered_cosine_min": 0.99, "top1_agreement_min": 0.9},
    "int8": {"finite": True, "shape": True, "centered_cosine_min": 0.95, "top1_agreement_min": 0.8},
}


def precision_class(precision: str) -> str:
    """'fp32' | 'half' | 'int8' from a runner's precision label ("f32", "bf16", "int8 (bf16 exec)", ...)."""
    p = precision.lower()
    if "int8" in p or "i8" in p.split() or "u8" in p.split():
        return "int8"
    if any(t in p for t in ("bf16", "fp16", "f16", "half")):
        return "half"
    return "fp32"


def default_gates(precision: str) -> dict[str, float | bool]:
    """Default gates for a candidate of this precision (tight for FP32, looser for half, loosest for INT8).

    `max_abs_rel` entries mean `max_abs <= max_abs_rel * output scale`; `resolve_gates` turns them into
    absolute thresholds per output.
    """
    return dict(_DEFAULTS[precision_class(precision)])


def resolve_gates(base: Mapping[str, Any], override: Mapping[str, Any] | None, output_scale: float | None
                  ) -> dict[str, float | bool]:
    """The gates of one output: `base` updated with its per-output `override` (None disables a gate);
    a relative `max_abs_rel` becomes `max_abs` at this output's scale (unless an absolute one is set)."""
    gates: dict[str, Any] = dict(base)
    for k, v in (override or {}).items():
        gates[k] = v
    rel = gates.pop("max_abs_rel", None)
    if rel is not None and gates.get("max_abs") is None and "max_abs" not in (override or {}):
        if output_scale is not None:
            gates["max_abs"] = float(f"{float(rel) * max(float(output_scale), 1e-12):.3g}")
    return {k: v for k, v in gates.items() if v is not None and v is not False}
