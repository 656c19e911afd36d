"""Deterministic SVG plots: the same data gives the same bytes, so a plot is a cacheable output like any other.

matplotlib is imported inside each function, never at module import: a cached run (and listing the kinds)
must not pay for it. No pyplot: a `Figure` saved with `format="svg"` draws on matplotlib's own SVG canvas,
headless, and switches no process-wide backend. What would make the bytes vary is pinned, inside a local
`rc_context` (the caller's rcParams come back after): matplotlib's default style (a matplotlibrc on the
machine changes nothing), the bundled DejaVu Sans (no system font is looked up), text written as SVG
<text> (no glyph outlines: smaller, and searchable), a fixed `svg.hashsalt` (the ids of clip paths), and
no date or creator in the metadata. What still changes the bytes is matplotlib's version: a stage that
draws keeps it in its key.

Three plots:
- `errors_svg`: per-sample figures (one panel each) as an ECDF, the gate threshold drawn and labelled;
- `latency_svg`: latency against batch size, a p50 line in a p5-p95 band, one series per engine;
- `pareto_svg`: trials' gate figure against latency, the gate line, pass/fail and the chosen trial marked.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SALT = "pipeline"  # svg.hashsalt: the ids matplotlib gives clip paths, fixed instead of random
RC: dict[str, Any] = {
    "svg.hashsalt": SALT,
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.titlesize": 9.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8.0,
}
METADATA = {"Date": None, "Creator": None}  # no timestamp, no version string
PASS_COLOR, FAIL_COLOR, GATE_COLOR = "tab:blue", "tab:red", "tab:orange"
OP = {"min": ">=", "max": "<="}


@dataclass(frozen=True)
class Panel:
    """One per-sample figure of one output: its values (NaN allowed: counted, not drawn), and the gate on it.

    `direction` says which end is worst ("min": low values, as cosine; "max": high, as relative error);
    `threshold` is the gate's (None: not gated, no line); `passed` its verdict (None: not gated)."""

    output: str
    figure: str
    values: Sequence[float]
    direction: str = "min"
    threshold: float | None = None
    gate: str | None = None
    passed: bool | None = None
    samples: Sequence[int] = ()  # each value's sample index (empty: 0, 1, 2, ...), to name the worst


@dataclass(frozen=True)
class Series:
    """One engine's latency per batch size: p50, with the p5-p95 interval around it (milliseconds)."""

    engine: str
    batches: Sequence[int]
    p50_ms: Sequence[float]
    p5_ms: Sequence[float] = field(default_factory=tuple)
    p95_ms: Sequence[float] = field(default_factory=tuple)


@dataclass(frozen=True)
class Trial:
    """One point of a Pareto plot (`pareto_svg` also takes a dict with these keys): its latency in ms (with
    the interval low-high, optional), its gate figure, whether it passed the gate, and a short unique label."""

    latency_ms: float
    figure: float
    passed: bool
    label: str
    latency_low_ms: float | None = None
    latency_high_ms: float | None = None

    @property
    def low(self) -> float:
        return self.latency_ms if self.latency_low_ms is None else self.latency_low_ms

    @property
    def high(self) -> float:
        return self.latency_ms if self.latency_high_ms is None else self.latency_high_ms

    @classmethod
    def of(cls, t: Trial | Mapping[str, Any]) -> Trial:
        """A Trial from itself or from a dict with its keys (other keys, a search's own, are ignored)."""
        if isinstance(t, Trial):
            return t
        missing = [k for k in ("latency_ms", "figure", "passed", "label") if k not in t]
        if missing:
            raise ValueError(f"a trial needs {', '.join(missing)} (it has: {', '.join(map(str, t))})")
        low, high = t.get("latency_low_ms"), t.get("latency_high_ms")
        return cls(
            latency_ms=float(t["latency_ms"]),
            figure=float(t["figure"]),
            passed=bool(t["passed"]),
            label=str(t["label"]),
            latency_low_ms=None if low is None else float(low),
            latency_high_ms=None if high is None else float(high),
        )


def gate_text(gate: str | None, direction: str, threshold: float) -> str:
    """How a threshold line is labelled (also what a test looks for in the SVG): `cosine_min >= 0.9999`."""
    return f"{gate or 'threshold'} {OP.get(direction, '=')} {threshold:g}"


def errors_svg(path: Path, panels: Sequence[Panel], title: str = "") -> None:
    """Each panel's per-sample distribution as an ECDF (share of samples at or below a value): the worst
    sample sits at one end, marked and named, and the gate's threshold is a labelled vertical line, so the
    margin between the worst sample and the gate reads at a glance. No panels: a figure that says so."""
    with _style():
        from matplotlib.figure import Figure

        cols = 1 if len(panels) <= 3 else 2
        rows = max(1, math.ceil(len(panels) / cols))
        fig = Figure(figsize=(6.4 * cols, 2.6 * rows), layout="constrained")
        if title:
            fig.suptitle(title)
        if not panels:
            ax = fig.subplots()
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no per-sample figures", ha="center", va="center")
        else:
            axes = fig.subplots(rows, cols, squeeze=False).ravel()
            for ax, panel in zip(axes, panels):
                _ecdf(ax, panel)
            for ax in axes[len(panels) :]:
                ax.set_axis_off()
        _save(fig, path)


def _ecdf(ax: Axes, p: Panel) -> None:
    import numpy as np

    values = np.asarray(p.values, dtype=float)
    samples = np.asarray(p.samples if len(p.samples) == len(values) else range(len(values)))
    finite = np.isfinite(values)
    x, idx = values[finite], samples[finite]
    order = np.argsort(x, kind="stable")
    x, idx = x[order], idx[order]
    n = len(x)
    verdict = "" if p.passed is None else (" (PASS)" if p.passed else " (FAIL)")
    skipped = f", {len(values) - n} not finite" if n < len(values) else ""
    ax.set_title(f"{p.output}: {p.figure}{verdict}, {len(values)} samples{skipped}", loc="left")
    ax.set_xlabel(p.figure)
    ax.set_ylabel("share of samples <= x")
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_ylim(-0.02, 1.02)
    color = FAIL_COLOR if p.passed is False else PASS_COLOR
    if n:
        ax.step(np.concatenate([[x[0]], x]), np.arange(n + 1) / n, where="post", color=color, label="samples")
        w = 0 if p.direction == "min" else n - 1
        ax.plot([x[w]], [(w + 1) / n], "o", color=color, label=f"worst: sample {idx[w]} = {x[w]:.8g}")
    span = [*x[[0, -1]]] if n else []
    if p.threshold is not None:
        ax.axvline(p.threshold, color=GATE_COLOR, linestyle="--", label=gate_text(p.gate, p.direction, p.threshold))
        span.append(float(p.threshold))
    if span:
        lo, hi = min(span), max(span)
        pad = (hi - lo) * 0.05 or max(abs(hi), 1.0) * 1e-6
        ax.set_xlim(lo - pad, hi + pad)
    if ax.get_legend_handles_labels()[0]:  # all values NaN and ungated: nothing to name
        ax.legend(loc="upper left" if p.direction == "min" else "lower right")


def latency_svg(path: Path, series: Sequence[Series], title: str = "") -> None:
    """Latency per batch against batch size: each engine's p50 as a line, its p5-p95 as a band (and error
    bars, which a single batch size still shows). Batch sizes on a log-2 axis: 1, 8, 64 spread evenly."""
    with _style():
        from matplotlib.figure import Figure
        from matplotlib.ticker import FixedLocator, NullLocator

        fig = Figure(figsize=(6.4, 3.6), layout="constrained")
        ax = fig.subplots()
        ax.set_title(title or "latency per batch", loc="left")
        ax.set_xlabel("batch size")
        ax.set_ylabel("ms per batch")
        batches: set[int] = set()
        for i, s in enumerate(series):
            color = f"C{i}"
            ax.plot(s.batches, s.p50_ms, "o-", color=color, label=f"{s.engine} p50")
            if len(s.p5_ms) == len(s.batches) and len(s.p95_ms) == len(s.batches):
                ax.fill_between(s.batches, s.p5_ms, s.p95_ms, color=color, alpha=0.2, label=f"{s.engine} p5-p95")
                low = [m - lo for m, lo in zip(s.p50_ms, s.p5_ms)]
                high = [hi - m for m, hi in zip(s.p50_ms, s.p95_ms)]
                ax.errorbar(s.batches, s.p50_ms, yerr=[low, high], fmt="none", color=color, capsize=3)
            batches.update(s.batches)
        if batches:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(sorted(batches)))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([str(b) for b in sorted(batches)])
            ax.set_ylim(bottom=0)
            ax.legend(loc="upper left")
        else:
            ax.text(0.5, 0.5, "nothing timed", ha="center", va="center", transform=ax.transAxes)
        _save(fig, path)


def pareto_svg(
    path: Path,
    trials: Sequence[Trial | Mapping[str, Any]],
    gate_label: str,
    threshold: float | None,
    chosen: str | None,
) -> None:
    """Each trial's gate figure (y) against its latency (x, ms), with error bars for the latency interval
    when given: passing trials filled dots, failing ones red crosses, the gate a labelled horizontal line
    (`gate_label`, e.g. "cosine_min >= 0.95" or "cosine, worst sample") and the trial labelled `chosen`
    ringed and named. `trials` are `Trial`s or plain dicts with the same keys (latency_ms, figure, passed,
    label; latency_low_ms and latency_high_ms optional); every trial is labelled with its `label`."""
    points = [Trial.of(t) for t in trials]
    with _style():
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.0), layout="constrained")
        ax = fig.subplots()
        ax.set_title(f"trials: {gate_label} against latency", loc="left")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel(gate_label)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        for passed, marker, color, name in ((True, "o", PASS_COLOR, "passed"), (False, "x", FAIL_COLOR, "failed")):
            group = [t for t in points if t.passed is passed]
            if not group:
                continue
            x = [t.latency_ms for t in group]
            y = [t.figure for t in group]
            ax.plot(x, y, marker, color=color, linestyle="none", label=f"{name} ({len(group)})")
            if any(t.latency_low_ms is not None or t.latency_high_ms is not None for t in group):
                xerr = [[t.latency_ms - t.low for t in group], [t.high - t.latency_ms for t in group]]
                ax.errorbar(x, y, xerr=xerr, fmt="none", color=color, capsize=3, alpha=0.6)
        for t in points:
            ax.annotate(t.label, (t.latency_ms, t.figure), xytext=(4, 4), textcoords="offset points", fontsize=7)
        if threshold is not None:
            ax.axhline(threshold, color=GATE_COLOR, linestyle="--", label=f"gate {threshold:g}")
        best = next((t for t in points if t.label == chosen), None) if chosen is not None else None
        if best is not None:
            ax.plot(
                [best.latency_ms],
                [best.figure],
                "o",
                markersize=14,
                markerfacecolor="none",
                markeredgecolor="black",
                label=f"chosen: {best.label}",
            )
        if points or threshold is not None:
            ax.legend(loc="best")
        _save(fig, path)


@contextmanager
def _style() -> Iterator[None]:
    """matplotlib's default style with `RC` on top, for the drawing inside only (rcParams restored after)."""
    import matplotlib.style

    with matplotlib.style.context(RC, after_reset=True):  # reset first: a matplotlibrc changes no byte
        yield


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata=METADATA)
