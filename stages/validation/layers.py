"""validate's per-layer analysis: where the candidate's time goes, in which precision, and what INT8 missed.

The candidate's runner profiles one input at the latency batch
(`Runner.profile`, on an engine instance of its own with the runtime's profiler
on, after the timed runs: the timings are never slowed by it). report.json's
`layers` lists every layer that ran, in execution order ({name, type, kernel,
precision, time_ms, share}); `layer_summary` holds the sum of the layer times,
the whole-model latency at the same batch (the latency timing's p50 when it ran,
else the profiled inferences' own wall time, profiling on) and their ratio
(`coverage`: below 1 is per-call work no layer accounts for), the share of time
per precision, the top layers, and for an INT8 candidate the compute layers
(Conv, MatMul, FullyConnected, Gemm...) that ran in float. A profile that fails
is a warning and a note, never a failed validation. report.md's section is
`layers_markdown`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from pipeline.errors import one_line
from stages.runtimes import layers as L

TOP = 10  # layers report.md lists by time


@dataclass(frozen=True)
class LayerSection:
    """report.json's `layers` (every layer, as dicts) and `layer_summary`, and the warnings profiling raised."""

    layers: list[dict[str, Any]]
    summary: dict[str, Any]
    warnings: tuple[str, ...] = ()


def off(why: str) -> LayerSection:
    return LayerSection([], {"note": why})


def profile_candidate(
    candidate: Any,
    batch: Mapping[str, np.ndarray],
    b: int,
    runs: int,
    warmup: int,
    timing: Mapping[str, list[dict[str, Any]]],
) -> LayerSection:
    """Profile `candidate` on `batch` (`b` samples: the latency timing's input) and summarise it against the
    latency p50 on the same input, when the timing measured it."""
    from stages.validation.timing import input_shapes

    shapes = input_shapes(dict(batch))
    try:
        profile = candidate.profile(batch, runs=runs, warmup=warmup)
    except Exception as exc:  # noqa: BLE001 - per-layer analysis is information: its failure is reported
        why = f"per-layer profiling of the candidate failed: {one_line(exc, 300)}"
        return LayerSection([], {"note": why}, (why,))
    latency = next(
        (t for t in timing.get("candidate", []) if t["mode"] == "latency" and t.get("input") == shapes),
        None,
    )
    if latency is not None:
        model_ms, source = float(latency["p50_ms"]), "latency p50"
    else:
        model_ms, source = profile.wall_ms, "profiled inferences' wall time (profiling on)"
    return summarize(profile, candidate.precision, model_ms, source, batch=b, shapes=shapes)


def summarize(
    profile: L.LayerProfile,
    precision: str,
    model_ms: float | None,
    model_source: str,
    batch: int = 1,
    shapes: Mapping[str, list[int]] | None = None,
) -> LayerSection:
    """The `layers` rows (each with its share of the summed layer time) and the summary of one profile."""
    layers = list(profile.layers)
    total = sum(layer.time_ms for layer in layers if layer.time_ms is not None)
    timed = [layer for layer in layers if layer.time_ms is not None]

    def share(layer: L.LayerTime) -> float | None:
        return None if layer.time_ms is None or total <= 0 else layer.time_ms / total

    def row(layer: L.LayerTime) -> dict[str, Any]:
        return {**layer.as_dict(), "share": share(layer)}

    counts: dict[str, int] = {}
    for layer in layers:
        counts[layer.precision or "unknown"] = counts.get(layer.precision or "unknown", 0) + 1
    int8 = L.is_int8_engine(precision)
    summary: dict[str, Any] = {
        "backend": profile.backend,
        "runs": profile.runs,
        "batch": batch,
        "input": dict(shapes or {}),
        "layers": len(layers),
        "timed": len(timed),
        "skipped": profile.skipped,
        "sum_ms": total if timed else None,
        "model_ms": model_ms,
        "model_source": model_source,
        "coverage": total / model_ms if timed and model_ms else None,
        "precision_share": L.precision_shares(layers),
        "precision_layers": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        "top": [row(layer) for layer in L.top(layers, TOP)],
        "int8": int8,
        "float_after_int8": [row(layer) for layer in L.float_after_int8(layers)] if int8 else [],
        "notes": list(profile.notes),
    }
    return LayerSection([row(layer) for layer in layers], summary)


def layer_cells(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The run summary's cells: the slowest layer and its share (`layers_top`), and for an INT8 candidate how
    many compute layers stayed in float (`float_layers`). None without a profile."""
    if "backend" not in summary:
        return {}
    cells: dict[str, Any] = {}
    if summary["top"] and summary["top"][0]["share"] is not None:
        first = summary["top"][0]
        cells["layers_top"] = f"{_cell(first['name'], 32)} {first['share']:.0%}"
    if summary["int8"]:
        cells["float_layers"] = len(summary["float_after_int8"])
    return cells


# -- report.md -----------------------------------------------------------------------------------------------------


def layers_markdown(layers: list[dict[str, Any]], summary: Mapping[str, Any] | None) -> list[str]:
    """report.md's `## Layers`: what was profiled and how much of the latency the layers account for, the time
    per precision, the top layers by time, and (INT8 candidates) the compute layers that stayed in float."""
    lines = ["", "## Layers", ""]
    if not summary or "backend" not in summary:
        note = (summary or {}).get("note") or "no per-layer profile in this report"
        return lines + [f"_{note}_"]
    s = summary
    shapes = ", ".join(f"{n} {list(v)}" for n, v in s["input"].items())
    lines.append(
        f"{s['backend']}'s profiler, on an engine instance of its own (apart from the timed runs): median of "
        f"{s['runs']} inference{'s' if s['runs'] != 1 else ''} at batch {s['batch']} ({shapes}); {s['layers']} "
        f"layers ran" + (f", {s['skipped']} fused away or not run" if s["skipped"] else "") + "."
    )
    if s["sum_ms"] is not None and s["model_ms"]:
        lines.append(
            f"Layer times sum to {s['sum_ms']:.3f} ms, {s['coverage']:.0%} of the whole-model latency "
            f"({s['model_ms']:.3f} ms, {s['model_source']})"
            + (
                ": the rest is per-inference work no layer accounts for (runtime calls, input and output copies)."
                if s["coverage"] < 0.9
                else ": more, as the profiler's own timers slow each layer."
                if s["coverage"] > 1.1
                else "."
            )
        )
    for note in s.get("notes", []):
        lines.append(f"\n_{note}_")
    if s["precision_share"]:
        lines += ["", "| precision | share of layer time | layers |", "|---|---|---|"]
        for p, v in s["precision_share"].items():
            lines.append(f"| {p} | {v:.1%} | {s['precision_layers'].get(p, 0)} |")
    elif s["precision_layers"]:
        lines += ["", "| precision | layers |", "|---|---|"]
        lines += [f"| {p} | {n} |" for p, n in s["precision_layers"].items()]
    if s["top"]:
        lines += [
            "",
            f"Top {len(s['top'])} layers by time:",
            "",
            "| # | layer | type | kernel | precision | ms | share |",
            "|---|---|---|---|---|---|---|",
        ]
        for i, r in enumerate(s["top"], 1):
            lines.append(
                f"| {i} | {_cell(r['name'])} | {_cell(r['type'])} | {_cell(r['kernel'])} | {r['precision'] or '—'} "
                f"| {r['time_ms']:.4f} | {_pct(r['share'])} |"
            )
    if s["int8"]:
        floats = s["float_after_int8"]
        lines += ["", "### Compute layers that stayed in float after INT8", ""]
        if not floats:
            lines.append("None: every convolution and matrix product ran in INT8.")
        else:
            spent = sum(r["share"] or 0.0 for r in floats)
            lines.append(
                f"{len(floats)} compute layer{'s' if len(floats) != 1 else ''}, {spent:.1%} of the layer time:"
            )
            lines += [""] + [
                f"- `{r['name']}` ({r['type']}, {r['precision']}"
                + (f", {r['time_ms']:.4f} ms, {_pct(r['share'])}" if r["time_ms"] is not None else "")
                + ")"
                for r in floats
            ]
    return lines


def _cell(text: str, width: int = 70) -> str:
    """A table cell: pipes escaped, long names cut in the middle (the ends tell layers apart)."""
    text = text.replace("|", "\\|") or "—"
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width // 2 - 1) :]


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{share:.1%}"
