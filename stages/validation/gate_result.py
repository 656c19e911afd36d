"""A gate's verdict and how it prints: `FAILED | logits | cosine 0.981 < 0.990 (would pass at 0.981)`.

Display rounding never contradicts the verdict: an observation is rounded down
for min gates and up for max gates, and more digits are shown (up to
MAX_DIGITS, then the exact shortest forms) while the printed pair would look
equal or compare the other way round (`distinct`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, TypeGuard

import numpy as np

from stages.validation.gates import GATES

MAX_DIGITS = 10  # past this many digits a pair that still looks equal prints in full (repr)


@dataclass(frozen=True)
class GateResult:
    """One gate on one output: `FAILED | logits | cosine 0.981 < 0.990 (would pass at 0.981)`."""

    metric: str  # a gate name (key of _gates.GATES)
    output: str
    observed: float | bool | None  # None: the figure could not be computed (see note)
    threshold: float | bool
    passed: bool
    note: str = ""

    @property
    def direction(self) -> str:
        return GATES[self.metric].direction

    @property
    def label(self) -> str:
        return GATES[self.metric].label

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
        return {
            "metric": self.metric,
            "output": self.output,
            "observed": self.observed,
            "threshold": self.threshold,
            "passed": self.passed,
            "would_pass": self.would_pass,
            "note": self.note,
            "text": str(self),
        }


def check_gate(
    metric: str, output: str, observed: float | bool | None, threshold: float | bool, note: str = ""
) -> GateResult:
    """Compare `observed` with `threshold` in the gate's direction; a missing or NaN figure fails."""
    if metric not in GATES:
        raise ValueError(f"unknown gate {metric!r} (known: {', '.join(GATES)})")
    direction = GATES[metric].direction
    if direction == "bool":
        passed = (not threshold) or bool(observed)
    elif not _is_number(observed) or math.isnan(float(observed)):
        passed = False
    elif direction == "min":
        passed = float(observed) >= float(threshold)
    else:
        passed = float(observed) <= float(threshold)
    return GateResult(metric, output, observed, threshold, passed, note)


def passes(metric: str, observed: float, threshold: float) -> bool:
    """The verdict alone (what `check_gate` decides for a number)."""
    return check_gate(metric, "", observed, threshold).passed


def would_pass(metric: str, observed: float, digits: int = 3) -> float | None:
    """The tightest `metric` threshold that `observed` passes, rounded the safe way to `digits`."""
    direction = GATES[metric].direction
    if direction == "bool" or not math.isfinite(observed):
        return None
    return _round_safe(observed, direction, metric, digits)


def _is_number(x: Any) -> TypeGuard[int | float | np.integer[Any] | np.floating[Any]]:
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool)


def display_digits(metric: str, threshold: float) -> int:
    """Decimals (unit-interval figures) or significant digits (error figures) that show `threshold` exactly."""
    if not math.isfinite(threshold) or threshold == 0:
        return 3
    d = Decimal(repr(float(threshold))).normalize()
    sign, digits, exponent = d.as_tuple()
    if GATES[metric].unit:
        return min(max(3, -int(exponent)), MAX_DIGITS)
    return min(max(3, len(digits)), MAX_DIGITS)


def figure_digits(metric: str, value: float) -> int:
    """Digits that show a figure without rounding it onto a bound: 0.99999994 is not printed as 1.000000."""
    digits = 6 if "cosine" in metric else 4
    if GATES[metric].unit and math.isfinite(value):
        while digits < 9 and value not in (0.0, 1.0) and float(f"{value:.{digits}f}") in (0.0, 1.0):
            digits += 1
    return digits


def format_value(metric: str, value: float, digits: int = 3) -> str:
    """Unit-interval figures with `digits` decimals; error figures with `digits` significant digits."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if GATES[metric].unit:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}g}"


def pair_digits(metric: str, observed: float, threshold: float) -> int:
    """`display_digits`, plus more while the printed pair would not compare as the numbers do."""
    digits = display_digits(metric, threshold)
    while digits < MAX_DIGITS and not _faithful(
        observed, threshold, *_format_pair(metric, observed, threshold, digits)
    ):
        digits += 1
    return digits


def format_pair(metric: str, observed: float, threshold: float) -> tuple[str, str]:
    """Observed (rounded the safe way, so the printed pair never contradicts the verdict) and threshold."""
    return distinct(observed, threshold, metric)


def distinct(
    observed: float, threshold: float, metric: str | None = None, decimals: int | None = None
) -> tuple[str, str]:
    """`observed` and `threshold` as two strings that compare as the numbers do: never equal-looking when
    they differ (`0.9999 < 0.9999`), never reversed (`0.999999999 >= 1.000000000`), with the fewest
    digits that achieve it, up to MAX_DIGITS (then the exact shortest forms).

    With a gate `metric`: in its style (`format_value`) from `display_digits`, the observation rounded the
    safe way. Else with `decimals`: fixed-point from that many decimals (`0.99 < 1.00`, `0.998 < 1.000`).
    Else significant digits, from as many as the threshold is written with (at least 2), so short numbers
    that already differ stay short (`0.73 < 1`, `1.049 < 1.05`)."""
    if metric is not None:
        pair = _format_pair(metric, observed, threshold, pair_digits(metric, observed, threshold))
    else:
        style = "f" if decimals is not None else "g"
        pair = ("", "")
        for digits in range(decimals if decimals is not None else max(2, _significant(threshold)), MAX_DIGITS + 1):
            pair = (f"{observed:.{digits}{style}}", f"{threshold:.{digits}{style}}")
            if _faithful(observed, threshold, *pair):
                break
    if _faithful(observed, threshold, *pair):
        return pair
    return repr(float(observed)), repr(float(threshold))


def _faithful(observed: float, threshold: float, a: str, b: str) -> bool:
    """Do the printed `a` and `b` compare as `observed` and `threshold` do (NaN and infinities as printed)?"""
    if not (math.isfinite(observed) and math.isfinite(threshold)):
        return True
    x, y = float(a), float(b)
    return (x > y) - (x < y) == (observed > threshold) - (observed < threshold)


def _significant(value: float) -> int:
    """Significant digits in the shortest form of `value` (0.9999 -> 4, 1.0 -> 1)."""
    if not math.isfinite(value) or value == 0:
        return 1
    return len(Decimal(repr(float(value))).normalize().as_tuple().digits)


def _format_pair(metric: str, observed: float, threshold: float, digits: int) -> tuple[str, str]:
    shown = _round_safe(observed, GATES[metric].direction, metric, digits) if math.isfinite(observed) else observed
    return format_value(metric, shown, digits), format_value(metric, threshold, digits)


def _round_safe(value: float, direction: str, metric: str, digits: int) -> float:
    """Round `value` to display precision, down for min gates and up for max gates.

    Decimal arithmetic on the shortest repr, so 0.99995 floors to 0.99995 at five
    decimals (binary floating point would give 0.99994) and never to 1.0000.
    """
    if not math.isfinite(value) or value == 0:
        return value
    d = Decimal(repr(float(value)))
    if GATES[metric].unit:
        quantum = Decimal(1).scaleb(-digits)
    else:
        quantum = Decimal(1).scaleb(d.adjusted() - digits + 1)
    rounded = d.quantize(quantum, rounding=ROUND_FLOOR if direction == "min" else ROUND_CEILING)
    return float(rounded)
