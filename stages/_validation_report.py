"""validate's report: the summary row, report.json's JSON-safe form, and report.md for people.

report.md puts warnings first, then every gate (PASS/FAIL, observed, threshold, and the
tightest threshold that would have passed), then the figures per output with the same
would-pass column, the reference's sensitivity, the shapes exercised, timings and the
environment.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from stages import _metrics as M


def summary_row(precision: str, outputs: dict[str, dict[str, Any]], labels_output: str | None,
                timing: dict[str, list[dict[str, Any]]], passed: list[Any], results: list[Any]) -> dict[str, Any]:
    """The run's summary-table row: precision, worst max_abs and centered cosine, agreement, accuracy, timings."""
    def worst(key: str, fn: Any) -> float | None:
        vals = [o["figures"].get(key) for o in outputs.values()]
        vals = [v for v in vals if isinstance(v, float) and not math.isnan(v)]
        return fn(vals) if vals else None

    s: dict[str, Any] = {"precision": precision, "max_abs": _sig(worst("max_abs", max)),
                         "centered_cosine": _sig(worst("centered_cosine", min), 6)}
    first_cls = labels_output or next((o for o, e in outputs.items() if e["figures"].get("top1_agreement") is not None),
                                      None)
    if first_cls and outputs[first_cls]["figures"].get("top1_agreement") is not None:
        s["top1_agree"] = round(outputs[first_cls]["figures"]["top1_agreement"], 4)
    if labels_output and outputs[labels_output]["figures"].get("accuracy") is not None:
        s["accuracy"] = round(outputs[labels_output]["figures"]["accuracy"], 4)
    for t in timing["candidate"]:
        if t["mode"] == "latency":
            s["p50_ms"] = round(t["p50_ms"], 3)
        else:
            s[f"fps_b{t['batch']}"] = round(t["throughput"], 1)
    s["gates"] = f"{len(passed)}/{len(results)} passed"
    return s


def _sig(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else float(f"{x:.{digits}g}")


def jsonable(x: Any) -> Any:
    """Plain JSON types; NaN and infinities as strings ("nan"), which strict JSON parsers accept."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else str(float(x))
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# Figure, the gate that reads it (None: report-only) and the gate whose formatting it borrows.
_FIGURE_ROWS = (("max_abs", "max_abs", "max_abs"), ("mean_abs", "mean_abs", "mean_abs"),
                ("cosine", "cosine_min", "cosine_min"), ("cosine_overall", None, "cosine_min"),
                ("centered_cosine", "centered_cosine_min", "centered_cosine_min"),
                ("top1_agreement", "top1_agreement_min", "top1_agreement_min"),
                ("top5_agreement", "top5_agreement_min", "top5_agreement_min"),
                ("accuracy", "accuracy_min", "accuracy_min"), ("reference_accuracy", None, "accuracy_min"),
                ("accuracy_drop", "accuracy_drop_max", "accuracy_drop_max"), ("output_scale", None, "max_abs"))


def markdown(report: dict[str, Any], results: list["M.GateResult"]) -> str:
    """report.md: warnings first, then gates, figures, sensitivity, shapes, timing, environment."""
    status = "PASSED" if report["passed"] else "FAILED"
    c, r, d = report["candidate"], report["reference"], report["data"]
    lines = [f"# validate {report['stage']}: {status} ({report['gates_passed']}/{report['gates_total']} gates)", "",
             f"- candidate: `{c['artifact']}`, {c['precision']}"
             + (f" ({c['runner']})" if c['runner'] not in c['precision'] else ""),
             f"- reference: `{r['artifact']}`, {r['precision']}",
             f"- data: `data.{d['name']}` ({d['kind']}, {d['samples_used']} samples"
             f"{', labelled' if d['labels'] else ''}{', synthetic' if d['synthetic'] and d['kind'] != 'synthetic' else ''}); "
             f"numerics batches: {_runs(report['numerics_batches'])}", ""]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in report["warnings"]] + [""]
    lines += ["## Gates", "", "| result | output | gate | observed | threshold | would pass at |",
              "|---|---|---|---|---|---|"]
    for g in results:
        if g.direction == "bool":
            obs, thr, wp = ("ok" if g.passed else "FAILED") + (f" ({g.note})" if g.note else ""), "required", ""
        elif not isinstance(g.observed, (int, float)) or g.observed is None:
            obs, thr, wp = f"n/a ({g.note})", f"{g.threshold:g}", ""
        else:
            obs, thr = M.format_pair(g.metric, float(g.observed), float(g.threshold))
            wp = M.format_value(g.metric, g.would_pass, g.digits) if g.would_pass is not None else ""
            if g.note:
                thr += f" ({g.note})"
        op = {"min": ">=", "max": "<=", "bool": ""}[g.direction]
        lines.append(f"| {'PASS' if g.passed else '**FAIL**'} | {g.output} | {f'{g.label} {op}'.strip()} | {obs} | "
                     f"{thr} | {wp} |")
    lines += ["", "## Figures", "", "Next to each figure, the tightest threshold it would pass.", ""]
    outs = report["outputs"]
    lines += ["| figure | " + " | ".join(f"{o} | would pass" for o in outs) + " |",
              "|---|" + "---|---|" * len(outs)]
    for key, gate, style in _FIGURE_ROWS:
        cells = []
        for o in outs.values():
            v = o["figures"].get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                cells += ["—", ""]
                continue
            digits = M.figure_digits(style, float(v))
            cells.append(M.format_value(style, float(v), digits))
            wp = M.would_pass(gate, float(v), digits) if gate else None
            cells.append(M.format_value(gate, wp, digits) if gate and wp is not None else "")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for flag in ("shape", "finite"):
        lines.append(f"| {flag} | " + " | ".join(f"{_yes(o['figures'].get(flag))} | " for o in outs.values()) + " |")
    lines += ["", "## Reference sensitivity", "", "| output | distinct top-1 | top-1 share | centered spread | verdict |",
              "|---|---|---|---|---|"]
    for name, o in outs.items():
        s = o["sensitivity"] or {}
        lines.append(f"| {name} | {s.get('distinct_top1', '—')} of {s.get('samples', '—')} | "
                     f"{_f(s.get('top1_share'))} | {_f(s.get('centered_spread'))} | "
                     f"{o['insensitive'] or 'informative'} |")
    lines += ["", "## Shapes", "", "| point | input shapes | run on |", "|---|---|---|"]
    for point, info in report["points"].items():
        shapes = ", ".join(f"{t} {tuple(s)}" for t, s in info["shapes"].items())
        lines.append(f"| {point} | {shapes} | {info['source']} |")
    lines += ["", "## Timing", "",
              "| engine | mode | batch | requests | p50 ms | p90 ms | p99 ms | samples/s | other CPU (cores) | attempts |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for who in ("candidate", "reference"):
        for t in report["timing"][who]:
            lines.append(f"| {who} | {t['mode']} | {t['batch']} | {t['requests']} | {t['p50_ms']:.3f} | "
                         f"{t['p90_ms']:.3f} | {t['p99_ms']:.3f} | {t['throughput']:.1f} | "
                         f"{t['cpu_other_fraction']:.2f} | {t['attempts']} |")
    env = report["environment"]
    lines += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in env.items()]
    for who in ("candidate", "reference"):
        extra = {k: v for k, v in report[who].items() if isinstance(v, dict)}
        for hint, props in extra.items():
            lines.append(f"- {who} {hint}: " + ", ".join(f"{k}={v}" for k, v in props.items()))
    return "\n".join(lines) + "\n"


def _runs(sizes: list[int]) -> str:
    return ", ".join(str(s) for s in sizes[:12]) + (f", ... ({len(sizes)} batches)" if len(sizes) > 12 else "")


def _yes(v: Any) -> str:
    return "—" if v is None else ("yes" if v else "**no**")


def _f(v: Any) -> str:
    return "—" if v is None else f"{v:.3g}"
