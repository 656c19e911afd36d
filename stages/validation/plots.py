"""validate's plots: what they show, as report.json's `plots` section, and the SVGs drawn from that section.

The section is made JSON-safe first and the plots are drawn from that form (`draw`), so the numbers in
report.json are the numbers drawn: reading the section back (`panels`, `series`) and drawing again gives
the same bytes.

- `errors` (plots/errors.svg, always): per output, per per-sample figure a gate reads on it (cosine,
  centered cosine, relative error, IoU), the values in sample order with each sample's dataset index, and
  the gate, its direction, threshold and verdict. When no such gate is evaluated on any output, every
  per-sample figure computed is drawn instead, ungated (`gated`: false). An output whose figures are
  dataset-level (too few elements per sample) has no per-sample values to draw.
- `latency` (plots/latency.svg, when anything was timed; null otherwise): per engine, per batch size,
  p5/p50/p95 ms per batch, taken from the timing with the fewest requests in flight at that batch
  (latency mode at batch 1 when both modes ran there: one request, no queueing in the figure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from stages.common.plots import Panel, Series
from stages.validation.figures import PER_SAMPLE
from stages.validation.gates import GATES
from stages.validation.gates import PER_SAMPLE as PER_SAMPLE_GATES

ERRORS, LATENCY = "errors.svg", "latency.svg"
ENGINES = ("candidate", "reference")


def plots_section(
    outputs: Mapping[str, Mapping[str, Any]],
    results: Iterable[Any],
    timing: Mapping[str, list[dict[str, Any]]],
    folder: str,
) -> dict[str, Any]:
    """report.json's `plots`: the numbers behind each plot, and each plot's file relative to the report
    (`folder`: the plots output's path, beside report.json)."""
    gated: dict[str, dict[str, Any]] = {}
    for g in results:
        figure = GATES[g.metric].figure
        values = outputs.get(g.output, {}).get("per_sample", {}).get(figure)
        if g.metric in PER_SAMPLE_GATES and values is not None:
            panel = _panel(outputs[g.output]["per_sample"], figure)
            panel.update(gate=g.metric, threshold=float(g.threshold), passed=bool(g.passed))
            gated.setdefault(g.output, {})[figure] = panel
    shown = gated or {
        o: {f: _panel(e["per_sample"], f) for f in PER_SAMPLE if f in e.get("per_sample", {})}
        for o, e in outputs.items()
    }
    errors = {"file": f"{folder}/{ERRORS}", "gated": bool(gated), "outputs": {o: f for o, f in shown.items() if f}}
    engines = {who: _latency(timing.get(who, [])) for who in ENGINES}
    engines = {who: points for who, points in engines.items() if points}
    latency = {"file": f"{folder}/{LATENCY}", "engines": engines} if engines else None
    return {"errors": errors, "latency": latency}


def _panel(per_sample: Mapping[str, list[Any]], figure: str) -> dict[str, Any]:
    return {
        "values": list(per_sample[figure]),
        "samples": list(per_sample["index"]),
        "direction": PER_SAMPLE[figure],
        "gate": None,
        "threshold": None,
        "passed": None,
    }


def _latency(timings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per batch size: the timing with the fewest requests in flight there (latency mode first)."""
    best: dict[int, dict[str, Any]] = {}
    for t in timings:
        b = int(t["batch"])
        rank = (t["requests"], t["mode"] != "latency")
        if b not in best or rank < (best[b]["requests"], best[b]["mode"] != "latency"):
            best[b] = t
    keys = ("mode", "requests", "p5_ms", "p50_ms", "p95_ms")
    return [{"batch": b, **{k: best[b].get(k) for k in keys}} for b in sorted(best)]


def panels(section: Mapping[str, Any]) -> list[Panel]:
    """The errors plot's panels from the (JSON-safe) section: outputs by name, figures in PER_SAMPLE's
    order, whatever order the JSON kept."""
    outs = section["errors"]["outputs"]
    return [
        Panel(
            output=o,
            figure=f,
            values=[float(v) for v in p["values"]],  # "nan" and "inf" strings are floats again
            direction=p["direction"],
            threshold=p["threshold"],
            gate=p["gate"],
            passed=p["passed"],
            samples=[int(i) for i in p["samples"]],
        )
        for o in sorted(outs)
        for f in PER_SAMPLE
        if f in outs[o]
        for p in [outs[o][f]]
    ]


def series(section: Mapping[str, Any]) -> list[Series]:
    """The latency plot's series from the section: the candidate first, then the reference when timed."""
    latency = section.get("latency") or {"engines": {}}
    out = []
    for who in ENGINES:
        points = latency["engines"].get(who)
        if points:
            out.append(
                Series(
                    engine=who,
                    batches=[p["batch"] for p in points],
                    p50_ms=[float(p["p50_ms"]) for p in points],
                    p5_ms=[float(p["p5_ms"]) for p in points if p.get("p5_ms") is not None],
                    p95_ms=[float(p["p95_ms"]) for p in points if p.get("p95_ms") is not None],
                )
            )
    return out


def draw(section: Mapping[str, Any], report_dir: Path, stage: str) -> list[Path]:
    """The SVGs the section describes, at its files' paths under `report_dir`; returns them."""
    from stages.common.plots import errors_svg, latency_svg

    gated = "" if section["errors"]["gated"] else " (no per-sample gate: ungated figures)"
    errors = report_dir / section["errors"]["file"]
    errors_svg(errors, panels(section), title=f"{stage}: per-sample figures{gated}")
    drawn = [errors]
    if section.get("latency"):
        latency = report_dir / section["latency"]["file"]
        latency_svg(latency, series(section), title=f"{stage}: latency per batch")
        drawn.append(latency)
    return drawn
