"""report.compare: two validate reports side by side, with the speed-up that should be there.

An INT8 engine that is not faster than the FP16 (or FP32) engine it replaces
is a build problem worth a loud flag: a missing fusion, Q/DQ in the wrong
place, a layer falling back to FP32. This kind puts the figures of two
`validate` reports next to each other (every output's role and agreement
figures, the accuracy of the output labels score, latency, throughput at each
batch both measured, file size) and warns, or fails when `min_speedup` is
set, when the candidate's throughput is not ahead of the baseline's. The
figures compared are those the gate table (`stages._gates`) gates on.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.errors import GateFailed
from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext
from stages._gates import TABLE

# Every figure a gate reads, in the table's order (each once).
FIGURES = tuple(dict.fromkeys(g.figure for g in TABLE if g.direction != "bool"))


class CompareParams(Params):
    min_speedup: float | None = Field(None, gt=0, description="gate: candidate/baseline throughput at every batch "
                                                                "both measured must reach this (e.g. 1.0: INT8 must "
                                                                "not be slower than FP16); None: report and warn only")
    warn_below: float = Field(1.05, gt=0, description="flag a throughput ratio below this in the report")


class CompareReports(Stage):
    """Put two validate reports side by side (figures, latency, throughput, size) and flag a missing speed-up."""

    kind = "report.compare"
    Params = CompareParams
    inputs = {"candidate": InputSpec(description="report.json of the engine expected to be faster (e.g. INT8)"),
              "baseline": InputSpec(description="report.json of the engine it replaces (e.g. FP16 or FP32)")}
    outputs = {"report": OutputSpec("compare.json"), "markdown": OutputSpec("compare.md")}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p: CompareParams = ctx.params
        cand, base = (_load(Path(ctx.inputs[n]), n) for n in ("candidate", "baseline"))
        speed = speedups(cand, base)
        flags = [f"{cand['stage']} is not faster than {base['stage']} at batch {b}: {r:.2f}x"
                 for b, r in speed.items() if r < p.warn_below]
        if not speed:
            flags.append("no batch size was timed in both reports: nothing to compare")
        result = {"candidate": _side(cand), "baseline": _side(base), "throughput_ratio": speed,
                  "size_ratio": _ratio(_size(cand), _size(base)), "flags": flags}
        (ctx.outdir / "compare.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        (ctx.outdir / "compare.md").write_text(markdown(result))
        for flag in flags:
            print(f"WARNING: {flag}", flush=True)
        summary: dict[str, Any] = {f"speedup_b{b}": round(r, 2) for b, r in speed.items()}
        labelled = result["candidate"]["labels_output"]
        if labelled:
            acc = [side["outputs"].get(labelled, {}).get("figures", {}).get("accuracy") for side in
                   (result["candidate"], result["baseline"])]
            if all(isinstance(a, (int, float)) for a in acc):
                summary[f"acc_change({labelled})"] = round(acc[0] - acc[1], 4)
        summary["flags"] = len(flags)
        if p.min_speedup is not None:
            failed = [f"throughput at batch {b}: {r:.2f}x < {p.min_speedup:.2f}x" for b, r in speed.items()
                      if r < p.min_speedup]
            if failed or not speed:
                raise GateFailed(failed or ["no common batch size was timed"])
        return summary


def _load(path: Path, name: str) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{name}: cannot read a validate report from {path.name}: {exc}") from None
    if "timing" not in report or "outputs" not in report:
        raise ValueError(f"{name}: {path.name} is not a validate report (no timing/outputs)")
    return report


def throughput_by_batch(report: dict[str, Any]) -> dict[int, float]:
    return {t["batch"]: t["throughput"] for t in report["timing"].get("candidate", []) if t["mode"] == "throughput"}


def speedups(cand: dict[str, Any], base: dict[str, Any]) -> dict[int, float]:
    """Candidate / baseline throughput at each batch size both reports measured."""
    a, b = throughput_by_batch(cand), throughput_by_batch(base)
    return {batch: a[batch] / b[batch] for batch in sorted(set(a) & set(b)) if b[batch] > 0}


def _latency(report: dict[str, Any]) -> float | None:
    return next((t["p50_ms"] for t in report["timing"].get("candidate", []) if t["mode"] == "latency"), None)


def _size(report: dict[str, Any]) -> float | None:
    return report.get("candidate", {}).get("size_mb")


def _side(report: dict[str, Any]) -> dict[str, Any]:
    """One report's column: every output's role and gated figures, the labels output, timings, size, gates."""
    outputs = {}
    for name, entry in report["outputs"].items():
        figs = entry.get("figures", {})
        outputs[name] = {"role": entry.get("role"), "figures": {k: figs.get(k) for k in FIGURES if k in figs}}
    return {"stage": report["stage"], "precision": report["candidate"].get("precision"), "outputs": outputs,
            "labels_output": report.get("data", {}).get("labels_output"), "p50_ms": _latency(report),
            "throughput": throughput_by_batch(report), "size_mb": _size(report),
            "gates": f"{report.get('gates_passed')}/{report.get('gates_total')}"}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def markdown(result: dict[str, Any]) -> str:
    c, b = result["candidate"], result["baseline"]
    rows = [("precision", c["precision"], b["precision"], ""), ("gates", c["gates"], b["gates"], "")]
    names = list(dict.fromkeys([*c["outputs"], *b["outputs"]]))
    labelled = c["labels_output"] or b["labels_output"]
    for o in sorted(names, key=lambda n: n != labelled):  # the output labels score first
        co, bo = c["outputs"].get(o, {}), b["outputs"].get(o, {})
        if co.get("role") or bo.get("role"):
            rows.append((f"role ({o})", co.get("role") or "-", bo.get("role") or "-", ""))
        for k in FIGURES:
            cv, bv = co.get("figures", {}).get(k), bo.get("figures", {}).get(k)
            if cv is not None or bv is not None:
                rows.append((f"{k} ({o})", _fmt(cv), _fmt(bv), ""))
    rows.append(("latency p50, batch 1 (ms)", _fmt(c["p50_ms"]), _fmt(b["p50_ms"]), _fmt(_ratio(c["p50_ms"], b["p50_ms"]))))
    for batch, r in result["throughput_ratio"].items():
        rows.append((f"throughput, batch {batch} (samples/s)", _fmt(c["throughput"][batch]), _fmt(b["throughput"][batch]),
                     f"{r:.2f}x"))
    rows.append(("size (MB)", _fmt(c["size_mb"]), _fmt(b["size_mb"]), _fmt(result["size_ratio"])))
    lines = [f"# {c['stage']} vs {b['stage']}", ""]
    lines += [f"> **{flag}**" for flag in result["flags"]] + ([""] if result["flags"] else [])
    lines += [f"| | {c['stage']} | {b['stage']} | ratio |", "|---|---|---|---|"]
    lines += [f"| {name} | {x} | {y} | {z} |" for name, x, y, z in rows]
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
