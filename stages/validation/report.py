"""validate's report: one `ValidationReport` makes the summary row, report.json's JSON-safe form, and report.md.

report.md puts warnings first, then every gate (PASS/FAIL, observed, threshold, and the
tightest threshold that would have passed), then each output's role and figures with the
same would-pass column and 95% intervals and the per-sample plot, the worst samples, the figures per
shape group, the reference's sensitivity, the shapes exercised, timings (with the input shapes timed,
and the latency plot), the per-layer analysis (`validation.layers`) and the environment. The plots
are linked relative to report.md (the plots folder sits beside it, in the stage's output folder and
in its view alike); report.json's `plots` section holds the numbers drawn, and each output's
per-sample values move there from its entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from stages.validation import gate_result as GR
from stages.validation.gate_eval import Verdicts
from stages.validation.gates import TABLE
from stages.validation.layers import layer_cells, layers_markdown

# The figure each role's summary cell shows (the one its default gates lean on), and its short name.
HEADLINE = {
    "classification": ("top1_agreement", "top1"),
    "regression": ("cosine", "cos"),
    "embedding": ("cosine", "cos"),
    "dense": ("iou", "iou"),
}
ROLE_SHORT = {"classification": "cls", "regression": "reg", "embedding": "emb", "dense": "dense"}


@dataclass(frozen=True)
class ValidationReport:
    """One validation, whole: report.json is `to_json()`, report.md `markdown()`, the summary row `summary()`.

    `candidate`, `reference` and `data` are their report blocks (how each engine ran, the dataset and how it
    was used); the rest are the steps' results as they came."""

    stage: str
    candidate: Mapping[str, Any]
    reference: Mapping[str, Any]
    data: Mapping[str, Any]
    precision: str  # the candidate's, as its runner names it
    numerics_batches: Any
    outputs: Mapping[str, dict[str, Any]]
    labels_output: str | None
    points: Mapping[str, Any]
    verdicts: Verdicts
    timing: Mapping[str, list[dict[str, Any]]]
    plots: Mapping[str, Any]  # validation.plots.plots_section
    environment: Mapping[str, Any]
    warnings: tuple[str, ...]
    layers: list[dict[str, Any]] = field(default_factory=list)  # validation.layers: every layer profiled
    layer_summary: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """report.json's content, JSON-safe (`jsonable`)."""
        results, passed = self.verdicts.results, self.verdicts.passed
        return jsonable(
            {
                "stage": self.stage,
                "passed": len(passed) == len(results),
                "gates_passed": len(passed),
                "gates_total": len(results),
                "candidate": dict(self.candidate),
                "reference": dict(self.reference),
                "data": dict(self.data),
                "numerics_batches": self.numerics_batches,
                "outputs": {o: {k: v for k, v in e.items() if k != "per_sample"} for o, e in self.outputs.items()},
                "points": dict(self.points),
                "gates": [g.as_dict() for g in results],
                "timing": dict(self.timing),
                "layers": list(self.layers),
                "layer_summary": dict(self.layer_summary),
                "plots": dict(self.plots),
                "environment": dict(self.environment),
                "warnings": list(self.warnings),
            }
        )

    def markdown(self) -> str:
        return markdown(self.to_json(), list(self.verdicts.results))

    def summary(self) -> dict[str, Any]:
        row = summary_row(
            self.precision,
            dict(self.outputs),
            self.labels_output,
            dict(self.timing),
            self.verdicts.passed,
            list(self.verdicts.results),
        )
        row["size_mb"] = self.candidate["size_mb"]
        row.update(layer_cells(self.layer_summary))
        return row


def summary_row(
    precision: str,
    outputs: dict[str, dict[str, Any]],
    labels_output: str | None,
    timing: dict[str, list[dict[str, Any]]],
    passed: list[Any],
    results: list[Any],
) -> dict[str, Any]:
    """The run's summary-table row: precision, each output's role and headline figure (named `fig(output)`),
    the largest max_abs and its output, the labels output's accuracy, timings and the gate count."""
    s: dict[str, Any] = {
        "precision": precision,
        "roles": " ".join(f"{o}={ROLE_SHORT[e['role']]}" for o, e in outputs.items()),
    }
    for o, e in outputs.items():
        figure, short = HEADLINE[e["role"]]
        v = e["figures"].get(figure)
        if isinstance(v, float) and not math.isnan(v):
            s[f"{short}({o})"] = round(v, 4) if figure == "top1_agreement" else _sig(v, 6)
    errors = [
        (e["figures"]["max_abs"], o)
        for o, e in outputs.items()
        if isinstance(e["figures"].get("max_abs"), float) and not math.isnan(e["figures"]["max_abs"])
    ]
    if errors:
        value, o = max(errors)
        s[f"max_abs({o})"] = _sig(value)
    if labels_output and outputs[labels_output]["figures"].get("accuracy") is not None:
        s["accuracy"] = round(outputs[labels_output]["figures"]["accuracy"], 4)
    for t in timing["candidate"]:
        if t["mode"] == "latency":
            s["p50_ms"] = round(t["p50_ms"], 3)
        else:
            s[f"fps_b{t['batch']}"] = round(t["throughput"], 1)
    s["gates"] = f"{len(passed)}/{len(results)} passed"
    skipped = not_evaluated(outputs)
    if skipped:
        s["gates"] += f", {len(skipped)} not evaluated"
        s["not_evaluated"] = " ".join(f"{g}({o})" for o, g, _ in skipped)
    return s


def not_evaluated(outputs: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(output, gate, why) of every default gate that fits an output's role but whose figure is missing."""
    return [(o, g, why) for o, e in outputs.items() for g, why in e.get("not_evaluated", {}).items()]


def _sig(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else float(f"{x:.{digits}g}")


def jsonable(x: Any) -> Any:
    """Plain JSON types; NaN and infinities as strings ("nan"), which strict JSON parsers accept."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [jsonable(v) for v in (sorted(x) if isinstance(x, set) else x)]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else str(float(x))
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _figure_rows() -> list[tuple[str, str | None, str]]:
    """(figure, the gate that reads it or None, the gate whose formatting it borrows), from the gate table."""
    rows: list[tuple[str, str | None, str]] = []
    for g in TABLE:
        if g.direction == "bool" or g.name == "max_abs_rel":
            continue
        rows.append((g.figure, g.name, g.name))
        if g.name in ("cosine_min", "centered_cosine_min", "iou_min", "rel_error_max"):
            tail = "p95" if g.direction == "max" else "p5"
            rows += [(f"{g.figure}_mean", None, g.name), (f"{g.figure}_{tail}", None, g.name)]
        if g.name == "cosine_min":
            rows.append(("cosine_overall", None, g.name))
        if g.name == "accuracy_min":
            rows.append(("reference_accuracy", None, g.name))
    return rows + [("output_scale", None, "max_abs")]


def _cell(key: str, gate: str | None, style: str, o: dict[str, Any]) -> list[str]:
    v = o["figures"].get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return ["—", ""]
    digits = GR.figure_digits(style, float(v))
    text = GR.format_value(style, float(v), digits)
    interval = o.get("intervals", {}).get(key)
    if interval:
        text += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    wp = GR.would_pass(gate, float(v), digits) if gate else None
    return [text, GR.format_value(gate, wp, digits) if gate and wp is not None else ""]


def markdown(report: dict[str, Any], results: list[GR.GateResult]) -> str:
    """report.md: warnings first, then gates, figures, worst samples, groups, sensitivity, shapes, timing."""
    status = "PASSED" if report["passed"] else "FAILED"
    c, r, d = report["candidate"], report["reference"], report["data"]
    lines = [
        f"# validate {report['stage']}: {status} ({report['gates_passed']}/{report['gates_total']} gates)",
        "",
        f"- candidate: `{c['artifact']}`, {c['precision']}"
        + (f" ({c['runner']})" if c["runner"] not in c["precision"] else ""),
        *_engine_line(c),
        f"- reference: `{r['artifact']}`, {r['precision']}",
        f"- data: `data.{d['name']}` ({d['kind']}, {d['samples_used']} samples in {len(d['groups'])} shape "
        f"group{'s' if len(d['groups']) != 1 else ''}"
        f"{', labelled' if d['labels'] else ''}"
        f"{', synthetic' if d['synthetic'] and d['kind'] != 'synthetic' else ''}); "
        f"numerics batches: {_runs(report['numerics_batches'])}"
        + (f"; padded positions from `{d['mask_input']}` left out" if d.get("mask_input") else ""),
        "",
    ]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in report["warnings"]] + [""]
    lines += [
        "## Gates",
        "",
        "| result | output | gate | observed | threshold | would pass at |",
        "|---|---|---|---|---|---|",
    ]
    for g in results:
        if g.direction == "bool":
            obs, thr, wp = ("ok" if g.passed else "FAILED") + (f" ({g.note})" if g.note else ""), "required", ""
        elif not isinstance(g.observed, (int, float)) or g.observed is None:
            obs, thr, wp = f"n/a ({g.note})", f"{g.threshold:g}", ""
        else:
            obs, thr = GR.format_pair(g.metric, float(g.observed), float(g.threshold))
            wp = GR.format_value(g.metric, g.would_pass, g.digits) if g.would_pass is not None else ""
            if g.note:
                thr += f" ({g.note})"
        op = {"min": ">=", "max": "<=", "bool": ""}[g.direction]
        lines.append(
            f"| {'PASS' if g.passed else '**FAIL**'} | {g.output} | {f'{g.label} {op}'.strip()} | {obs} | "
            f"{thr} | {wp} |"
        )
    outs = report["outputs"]
    for o, default_gate, why in not_evaluated(outs):
        lines.append(f"| **NOT EVALUATED** | {o} | `{default_gate}` (default) | n/a ({why}) | | |")
    lines += [
        "",
        "## Figures",
        "",
        "Per-sample figures are the worst sample's (what a gate reads), with their mean "
        "and 5th percentile from the worst end; proportions carry a 95% interval. Next to each figure, the "
        "tightest threshold it would pass.",
        "",
    ]
    lines += ["| figure | " + " | ".join(f"{o} | would pass" for o in outs) + " |", "|---|" + "---|---|" * len(outs)]
    lines.append("| role | " + " | ".join(f"{o.get('role', '—')} | " for o in outs.values()) + " |")
    for key, gate, style in _figure_rows():
        if all(not isinstance(o["figures"].get(key), (int, float)) for o in outs.values()):
            continue
        lines.append(f"| {key} | " + " | ".join(x for o in outs.values() for x in _cell(key, gate, style, o)) + " |")
    for flag in ("shape", "finite"):
        lines.append(f"| {flag} | " + " | ".join(f"{_yes(o['figures'].get(flag))} | " for o in outs.values()) + " |")
    for name, o in outs.items():
        if o.get("dataset_level"):
            lines.append(
                f"\n`{name}` has too few elements per sample for per-sample figures: "
                f"{', '.join(o['dataset_level'])} are dataset-level (all samples stacked into one vector), "
                "and their gates read that."
            )
        if o.get("self_centered"):
            lines.append(
                f"\n`{name}`: {o['self_centered']} sample(s) alone in their shape group: their centered "
                "cosine centers each map on its own reference mean (no group mean to use)."
            )
    plots = report.get("plots") or {}
    if plots.get("errors"):
        what = "gated per-sample figures" if plots["errors"]["gated"] else "per-sample figures (none gated)"
        lines += ["", f"![{what}: share of samples at or below each value, gates dashed]({plots['errors']['file']})"]
    lines += _worst_samples(outs) + _groups(outs)
    lines += [
        "",
        "## Reference sensitivity",
        "",
        "| output | distinct top-1 | top-1 share | centered spread | verdict |",
        "|---|---|---|---|---|",
    ]
    for name, o in outs.items():
        s = o["sensitivity"] or {}
        lines.append(
            f"| {name} | {s.get('distinct_top1', '—')} of {s.get('samples', '—')} | "
            f"{_f(s.get('top1_share'))} | {_f(s.get('centered_spread'))} | "
            f"{o['insensitive'] or 'informative'} |"
        )
    lines += ["", "## Shapes", "", "| point | input shapes | run on |", "|---|---|---|"]
    for point, info in report["points"].items():
        shapes = ", ".join(f"{t} {tuple(s)}" for t, s in info["shapes"].items())
        lines.append(f"| {point} | {shapes} | {info['source']} |")
    lines += [
        "",
        "## Timing",
        "",
        "| engine | mode | batch | input | requests | p50 ms | p90 ms | p99 ms | samples/s | other CPU (cores) "
        "| attempts |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for who in ("candidate", "reference"):
        for t in report["timing"][who]:
            lines.append(
                f"| {who} | {t['mode']} | {t['batch']} | {_shapes(t.get('input'))} | {t['requests']} | "
                f"{t['p50_ms']:.3f} | {t['p90_ms']:.3f} | {t['p99_ms']:.3f} | {t['throughput']:.1f} | "
                f"{t['cpu_other_fraction']:.2f} | {t['attempts']} |"
            )
    if plots.get("latency"):
        lines += ["", f"![latency per batch against batch size: p50, p5-p95 band]({plots['latency']['file']})"]
    lines += layers_markdown(report.get("layers", []), report.get("layer_summary"))
    env = report["environment"]
    lines += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in env.items()]
    for who in ("candidate", "reference"):
        extra = {k: v for k, v in report[who].items() if isinstance(v, dict)}
        for hint, props in extra.items():
            lines.append(f"- {who} {hint}: " + ", ".join(f"{k}={v}" for k, v in props.items()))
    return "\n".join(lines) + "\n"


def _engine_line(candidate: dict[str, Any]) -> list[str]:
    """The candidate's engine.json in one line (none without one): backend, precision, device, toolchain."""
    from stages.runtimes.engine_info import parse

    if not candidate.get("engine_info"):
        return []
    info = parse(candidate["engine_info"], "report.json candidate.engine_info")
    hint = f" (inference precision {info.inference_precision})" if info.inference_precision else ""
    tools = ", ".join(f"{k} {v}" for k, v in info.toolchain.items())
    return [f"- engine (engine.json): {info.backend}, {info.precision}{hint}, for {info.device}; {tools}"]


def _worst_samples(outs: dict[str, Any]) -> list[str]:
    rows = [(name, w) for name, o in outs.items() for w in o.get("worst", [])]
    if not rows:
        return []
    lines = ["", "## Worst samples", "", "| output | figure | sample | shape group | value |", "|---|---|---|---|---|"]
    for name, w in rows:
        lines.append(f"| {name} | {w['figure']} | {w['index']} | {w['group']} | {_g(w['value'])} |")
    return lines


def _groups(outs: dict[str, Any]) -> list[str]:
    keys = ("cosine", "centered_cosine", "rel_error", "iou", "top1_agreement", "accuracy", "max_abs")
    lines = [
        "",
        "## Shape groups",
        "",
        "| output | group | samples | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for name, o in outs.items():
        for key, g in o.get("groups", {}).items():
            lines.append(
                f"| {name} | {key} | {g['count']} | " + " | ".join(_g(g["figures"].get(k)) for k in keys) + " |"
            )
    return lines if len(lines) > 5 else []


def _shapes(shapes: dict[str, list[int]] | None) -> str:
    """A timing's input shapes, `input: [8, 3, 224, 224]` per input (— in a report written before they were)."""
    if not shapes:
        return "—"
    return ", ".join(f"{name}: [{', '.join(str(d) for d in shape)}]" for name, shape in shapes.items())


def _runs(sizes: list[int]) -> str:
    return ", ".join(str(s) for s in sizes[:12]) + (f", ... ({len(sizes)} batches)" if len(sizes) > 12 else "")


def _yes(v: Any) -> str:
    return "—" if v is None else ("yes" if v else "**no**")


def _f(v: Any) -> str:
    return "—" if v is None else f"{v:.3g}"


def _g(v: Any) -> str:
    if isinstance(v, str):
        return v
    return "—" if v is None else f"{v:.6g}"
