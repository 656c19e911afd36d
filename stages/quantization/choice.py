"""quantize.search's honest choice: the fastest trial that passes every gate, faster only beyond the noise.

Pure data, no runtime: trials carry their gate verdicts, a latency with an
interval and how many operations they keep in float. A trial is faster than
another only when its whole latency interval lies below the other's; trials
that no passing trial beats are tied, and a tie goes to fewer operations in
float, then to the lower median. When no trial passes there is no best: the
nearest trials are listed with their margin on each gate.

A failing trial is compared with another by its tail margin: each per-sample
gate's margin on the mean of its few worst samples (`Space.tail`), the others'
margins as they are. A gate's margin is in units of what the gate allows, so
gates on different scales compare: 0 at the threshold, negative when it fails, -1 at twice the
allowed error (a cosine of 0.98 against a 0.99 gate: allowed error 0.01, seen
0.02). Boolean gates (finite, shape) are +inf when they hold and -inf when not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from stages.validation.gates import GATES


@dataclass(frozen=True)
class Latency:
    """The objective, lower is better: the median of the repeats' medians (ms), with the repeats' range."""

    ms: float
    low_ms: float
    high_ms: float

    def faster_than(self, other: Latency) -> bool:
        return self.high_ms < other.low_ms

    def to_json(self) -> dict[str, float]:
        return {"ms": round(self.ms, 4), "low_ms": round(self.low_ms, 4), "high_ms": round(self.high_ms, 4)}


@dataclass(frozen=True)
class Verdict:
    """One gate on one output of one trial."""

    gate: str
    output: str
    observed: float | bool | None
    threshold: float | bool
    passed: bool
    text: str  # `embedding: cosine 0.974 < 0.990`

    @property
    def margin(self) -> float:
        return margin(self.gate, self.observed, self.threshold, self.passed)

    def to_json(self) -> dict[str, Any]:
        m = self.margin
        return {
            "gate": self.gate,
            "output": self.output,
            "observed": self.observed,
            "threshold": self.threshold,
            "passed": self.passed,
            "margin": round(m, 4) if math.isfinite(m) else None,
            "text": self.text,
        }


@dataclass(frozen=True)
class Scored:
    """A trial as the choice sees it."""

    index: int
    label: str
    verdicts: tuple[Verdict, ...]
    latency: Latency
    float_ops: int
    quantized: bool = True  # False: NNCF left nothing in INT8, which no gate may pass for an INT8 model
    tail: float | None = None  # the margin of the mean of the worst samples (None: the worst margin)

    @property
    def passed(self) -> bool:
        return self.quantized and all(v.passed for v in self.verdicts)

    @property
    def worst_margin(self) -> float:
        if not self.quantized:
            return -math.inf
        return min((v.margin for v in self.verdicts), default=math.inf)

    @property
    def tail_margin(self) -> float:
        """How a failing trial is compared: the gates' margins on the mean of their worst few samples, a
        steadier guide than the single worst sample (whose margin one stubborn sample can pin)."""
        if not self.quantized:
            return -math.inf
        return self.worst_margin if self.tail is None else self.tail

    def failures(self) -> list[Verdict]:
        nothing = Verdict("finite", "model", None, True, False, "nothing is left in INT8")
        return [v for v in self.verdicts if not v.passed] + ([] if self.quantized else [nothing])


def margin(gate: str, observed: float | bool | None, threshold: float | bool, passed: bool) -> float:
    """How far `observed` is inside (+) or outside (-) the gate, in units of what the gate allows."""
    g = GATES[gate]
    if g.direction == "bool":
        return math.inf if passed else -math.inf
    if observed is None or isinstance(observed, bool) or not math.isfinite(float(observed)):
        return -math.inf
    obs, thr = float(observed), float(threshold)
    if g.direction == "min":
        allowed = (1.0 - thr) if g.unit else abs(thr)
        return (obs - thr) / max(allowed, 1e-12)
    return (thr - obs) / max(abs(thr), 1e-12)


def better(a: Scored, b: Scored) -> bool:
    """Whether `a` is a better place to search from than `b`: passing beats failing; between two passing
    trials the faster beyond noise (else fewer float ops); between two failing, the larger tail margin."""
    if a.passed != b.passed:
        return a.passed
    if a.passed:
        if a.latency.faster_than(b.latency) or b.latency.faster_than(a.latency):
            return a.latency.faster_than(b.latency)
        return (a.float_ops, a.latency.ms) < (b.float_ops, b.latency.ms)
    return a.tail_margin > b.tail_margin


def choose(trials: Sequence[Scored]) -> Scored | None:
    """The fastest passing trial, faster beyond the noise; among those no passing trial beats, the fewest
    operations in float, then the lower median. None when no trial passes."""
    passing = [t for t in trials if t.passed]
    unbeaten = [t for t in passing if not any(o.latency.faster_than(t.latency) for o in passing)]
    if not unbeaten:
        return None
    return min(unbeaten, key=lambda t: (t.float_ops, t.latency.ms, t.index))


def nearest(trials: Sequence[Scored], count: int = 3) -> list[Scored]:
    """The failing trials closest to passing: the largest worst margin first."""
    failing = [t for t in trials if not t.passed]
    return sorted(failing, key=lambda t: (-t.worst_margin, t.index))[:count]


def no_pass_lines(trials: Sequence[Scored], count: int = 3) -> list[str]:
    """What GateFailed lists when no trial passes: the nearest trials, each with its margin on every gate
    it fails."""
    lines = [f"no trial of {len(trials)} passes every gate; nearest:"]
    for t in nearest(trials, count):
        shown = [v.text + (f" (margin {v.margin:+.2f})" if math.isfinite(v.margin) else "") for v in t.failures()]
        misses = "; ".join(shown)
        lines.append(f"trial {t.index} ({t.label}): {misses}")
    return lines
