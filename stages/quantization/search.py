"""quantize.search's path through the space, given a way to judge a setting and to rank quantizer groups.

No runtime here: `walk` calls `evaluate(setting, why)` for each trial (the kind
caches each one) and `rank(setting)` once, so the path is testable with made-up
figures. The path:

1. `quantize.nncf`'s default setting, always first: the report shows what the search bought.
2. One knob at a time (preset, model type, SmoothQuant alpha, bias correction, overflow fix), each from the best
   setting so far: a knob that makes things better is kept.
3. While a gate fails: the quantizer groups, ranked by the margin each one's revert reaches on the worst
   samples the gates read (the mean of the `space.tail` worst), are kept in float one by one; a move that
   does not make things better is stepped back; once the ranked candidates are spent, the groups are ranked
   again from where the search stands (as NNCF's accuracy control re-ranks), until none helps.
4. Once a setting passes: each operation kept in float is tried back in INT8 (the last added first), then
   each knob moved on the way back to its default (preset mixed is slower than performance); what still
   passes is kept (fewer float ops and changes, often a faster engine).

Every trial counts against `max_trials` and `max_minutes`, cached ones included, so a search resumed after
a kill takes the same path under `max_trials` (under `max_minutes` it may get further: cached trials are quick).
The default trial always runs; a setting the path comes back to is not tried twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from stages.quantization.choice import Scored, better
from stages.quantization.settings import DEFAULT, Setting, Space


@dataclass(frozen=True)
class Step:
    """One trial on the path: its setting, why it was tried, and whether the search moved there."""

    setting: Setting
    scored: Scored
    why: str
    kept: bool


@dataclass
class Budget:
    """At most `max_trials` trials and `max_minutes` of wall time (None: no limit)."""

    max_trials: int
    max_minutes: float | None
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.started or time.monotonic()

    def spent(self, trials: int) -> str | None:
        """Why no further trial may start, or None."""
        if trials >= self.max_trials:
            return f"max_trials {self.max_trials} reached"
        if self.max_minutes is not None and time.monotonic() - self.started > 60 * self.max_minutes:
            return f"max_minutes {self.max_minutes:g} reached"
        return None


Evaluate = Callable[[Setting, str], Scored]
Rank = Callable[[Setting], "list[tuple[str, float]]"]


@dataclass
class Walk:
    """The path so far, and why it ended."""

    steps: list[Step]
    stopped: str = "the space is exhausted"


def walk(evaluate: Evaluate, rank: Rank, space: Space, budget: Budget, transformer: bool) -> Walk:
    """Trials in the order described above; every trial is a `Step`."""
    path = Walk([])
    seen: dict[Setting, Scored] = {}

    def trial(setting: Setting, why: str) -> Scored | None:
        if setting in seen:  # a setting the path came back to: known already, no new step
            return seen[setting]
        spent = budget.spent(len(path.steps)) if path.steps else None  # the default always runs
        if spent is not None:
            path.stopped = spent
            return None
        scored = seen[setting] = evaluate(setting, why)
        path.steps.append(Step(setting, scored, why, kept=False))
        return scored

    def keep(setting: Setting = DEFAULT) -> None:
        """Mark the step that tried `setting` as where the search moved."""
        i = next(i for i in range(len(path.steps) - 1, -1, -1) if path.steps[i].setting == setting)
        path.steps[i] = replace(path.steps[i], kept=True)

    here, at = DEFAULT, trial(DEFAULT, "quantize.nncf's default setting")
    assert at is not None
    keep()
    for alternative in space.alternatives(DEFAULT, transformer):
        knob = _knob(alternative)
        moved = replace(here, **{knob: getattr(alternative, knob)})
        if moved == here:
            continue
        scored = trial(moved, f"one knob: {_knob_text(moved, knob)}")
        if scored is None:
            return path
        if better(scored, at):
            here, at = moved, scored
            keep(moved)
    added: list[str] = []  # kept in float, in the order the search added them
    while not at.passed and space.float_ops and len(here.float_ops.names) < space.max_float_ops:
        spent = budget.spent(len(path.steps))
        if spent is not None:  # the ranking costs a pass per quantizer group: not when no trial may follow
            path.stopped = spent
            return path
        ranked = [(name, m) for name, m in rank(here) if name not in here.float_ops.names]
        helps = [name for name, m in ranked if m > at.tail_margin] or [name for name, _ in ranked[:3]]
        moved_on = False
        for i, name in enumerate(helps, 1):
            if len(here.float_ops.names) >= space.max_float_ops:
                path.stopped = f"max_float_ops {space.max_float_ops} reached"
                break
            moved = replace(here, float_ops=here.float_ops.with_name(name))
            scored = trial(moved, f"keep {name} in float (sensitivity rank {i})")
            if scored is None:
                return path
            if better(scored, at):
                here, at, moved_on = moved, scored, True
                added.append(name)
                keep(moved)
                if at.passed:
                    break
        if not moved_on:  # no candidate helped: ranking again from here would name the same ones
            break
    if at.passed:
        for name in reversed(added):
            moved = replace(here, float_ops=here.float_ops.without_name(name))
            scored = trial(moved, f"try {name} back in INT8")
            if scored is None:
                return path
            if scored.passed:
                here, at = moved, scored
                keep(moved)
        for knob in _KNOBS:  # a knob moved only to get here may be slower (preset mixed): try its default
            if getattr(here, knob) == getattr(DEFAULT, knob):
                continue
            moved = replace(here, **{knob: getattr(DEFAULT, knob)})
            scored = trial(moved, f"back to the default {_knob_text(moved, knob)}")
            if scored is None:
                return path
            if scored.passed:
                here, at = moved, scored
                keep(moved)
    return path


_KNOBS = ("preset", "model_type", "smooth_quant_alpha", "bias_correction", "overflow_fix")


def _knob(alternative: Setting) -> str:
    """The one knob in which `alternative` differs from the default setting."""
    return next(k for k in _KNOBS if getattr(alternative, k) != getattr(DEFAULT, k))


def _knob_text(setting: Setting, knob: str) -> str:
    value = getattr(setting, knob)
    if knob == "smooth_quant_alpha":
        if value is None:
            return "SmoothQuant alpha (NNCF's)"
        return "SmoothQuant off" if value < 0 else f"SmoothQuant alpha {value:g}"
    return f"{knob.replace('_', ' ')} {value}"
