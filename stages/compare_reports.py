"""report.compare: two validate reports side by side, with the speed-up that should be there.

An INT8 engine that is not faster than the FP16 (or FP32) engine it replaces
is a build problem worth a loud flag: a missing fusion, Q/DQ in the wrong
place, a layer falling back to FP32. This kind puts the figures of two
`validate` reports next to each other (every output's role and agreement
figures, the accuracy of the output labels score, latency, throughput at each
batch both measured, file size) and warns, or fails when `min_speedup` is
set, when the candidate's throughput is not ahead of the baseline's. The
figures compared are those the gate table (`stages.validation.gates`) gates on.
Where both reports hold validate's per-layer profile, the layers are compared
too (`validation.layer_diff`: matched by name, the rest summed per type, time
and precision side by side, largest time change first); a report without one
(older, or profiled with `layers: false`) gives a note in its place.

What each side is (backend, precision, device, toolchain) is read from the
EngineInfo validate embeds (`candidate.engine_info`, the build's typed
engine.json, parsed by `runtimes.engine_info`); a side without one (an ONNX file run
in ONNX Runtime) is described by its runner (`candidate.runner`, `precision`
and the runner's version).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.errors import GateFailed
from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext
from stages.runtimes import engine_info
from stages.runtimes.engine_info import EngineInfo
from stages.validation.gate_result import distinct
from stages.validation.gates import TABLE
from stages.validation.layer_diff import diff_markdown, layer_diff

# Every figure a gate reads, in the table's order (each once).
FIGURES = tuple(dict.fromkeys(g.figure for g in TABLE if g.direction != "bool"))
_HINT_PRECISION = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}  # OpenVINO's execution precision, EngineInfo's word


class CompareParams(Params):
    min_speedup: float | None = Field(
        None,
        gt=0,
        description="gate: candidate/baseline throughput at every batch "
        "both measured must reach this (e.g. 1.0: INT8 must "
        "not be slower than FP16); None: report and warn only",
    )
    warn_below: float = Field(1.05, gt=0, description="flag a throughput ratio below this in the report")


class CompareReports(Stage[CompareParams]):
    """Put two validate reports side by side (figures, latency, throughput, size) and flag a missing speed-up."""

    kind = "report.compare"
    deliverable = True  # the reports that vouch for an engine travel with it
    inputs = {
        "candidate": InputSpec(description="report.json of the engine expected to be faster (e.g. INT8)"),
        "baseline": InputSpec(description="report.json of the engine it replaces (e.g. FP16 or FP32)"),
    }
    outputs = {"report": OutputSpec("compare.json"), "markdown": OutputSpec("compare.md")}

    def run(self, ctx: StageContext[CompareParams]) -> dict[str, Any]:
        p = ctx.params
        paths = {n: ctx.path(n) for n in ("candidate", "baseline")}
        cand, base = (_load(paths[n], n) for n in ("candidate", "baseline"))
        speed = speedups(cand, base)
        flags = [
            f"{cand['stage']} is not faster than {base['stage']} at batch {b}: {' < '.join(_ratios(r, p.warn_below))}"
            for b, r in speed.items()
            if r < p.warn_below
        ]
        if not speed:
            flags.append("no batch size was timed in both reports: nothing to compare")
        sides = {
            n: _side(r, engine_of(r, f"{n}: {paths[n].name}")) for n, r in (("candidate", cand), ("baseline", base))
        }
        result: dict[str, Any] = {
            **sides,
            "throughput_ratio": speed,
            "size_ratio": _ratio(_size(cand), _size(base)),
            "flags": flags,
            "layers": layer_diff(cand, base),
        }
        ctx.output("report").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        ctx.output("markdown").write_text(markdown(result))
        for flag in [*flags, *result["layers"].get("warnings", [])]:
            ctx.warn(flag)
        summary: dict[str, Any] = {f"speedup_b{b}": round(r, 2) for b, r in speed.items()}
        labelled = result["candidate"]["labels_output"]
        if labelled:
            acc = [
                side["outputs"].get(labelled, {}).get("figures", {}).get("accuracy")
                for side in (result["candidate"], result["baseline"])
            ]
            if all(isinstance(a, (int, float)) for a in acc):
                summary[f"acc_change({labelled})"] = round(acc[0] - acc[1], 4)
        summary["flags"] = len(flags)
        if p.min_speedup is not None:
            failed = [
                f"throughput at batch {b}: {' < '.join(_ratios(r, p.min_speedup))}"
                for b, r in speed.items()
                if r < p.min_speedup
            ]
            if failed or not speed:
                raise GateFailed(failed or ["no common batch size was timed"])
        return summary


def _ratios(ratio: float, bound: float) -> tuple[str, str]:
    """A throughput ratio and the bound it missed, with the digits that keep them apart: `0.998x < 1.000x`,
    never `1.00x < 1.00x`."""
    a, b = distinct(ratio, bound, decimals=2)
    return f"{a}x", f"{b}x"


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


def engine_of(report: dict[str, Any], where: str) -> EngineInfo | None:
    """The candidate's EngineInfo a validate report embeds (None for an engine without engine.json, or a report
    from before it was embedded); ValueError naming `where` when it does not parse."""
    data = report.get("candidate", {}).get("engine_info")
    return None if data is None else engine_info.parse(data, f"{where} candidate.engine_info")


def _side(report: dict[str, Any], engine: EngineInfo | None) -> dict[str, Any]:
    """One report's column: what ran (backend, precision, toolchain), every output's role and gated figures, the
    labels output, timings, size, gates."""
    outputs = {}
    for name, entry in report["outputs"].items():
        figs = entry.get("figures", {})
        outputs[name] = {"role": entry.get("role"), "figures": {k: figs.get(k) for k in FIGURES if k in figs}}
    c = report["candidate"]
    runner = c.get("runner")
    return {
        "stage": report["stage"],
        "precision": c.get("precision"),
        "backend": _backend(c, engine),
        "engine": None
        if engine is None
        else {
            "precision": engine.precision,
            "inference_precision": engine.inference_precision,
            "device": str(engine.device),
            "execution_precision": c.get("execution_precision"),
        },
        "toolchain": dict(engine.toolchain) if engine else ({runner: c[runner]} if c.get(runner) else {}),
        "outputs": outputs,
        "labels_output": report.get("data", {}).get("labels_output"),
        "p50_ms": _latency(report),
        "throughput": throughput_by_batch(report),
        "size_mb": _size(report),
        "gates": f"{report.get('gates_passed')}/{report.get('gates_total')}",
    }


def _backend(candidate: dict[str, Any], engine: EngineInfo | None) -> str | None:
    """The runtime that ran the candidate: the engine's backend, else the report's (or its runner's) name."""
    return engine.backend if engine else candidate.get("backend") or candidate.get("runner")


def _precision_cell(side: dict[str, Any]) -> str:
    """The engine's precision, with the execution precision OpenVINO chose where it differs (`int8 (bf16 exec)`);
    the runner's label for a side without engine.json."""
    engine = side.get("engine")
    if not engine:
        return side.get("precision") or "-"
    ran = engine.get("execution_precision")
    if ran and _HINT_PRECISION.get(ran, ran) != engine["precision"]:
        return f"{engine['precision']} ({ran} exec)"
    return engine["precision"]


def _backend_cell(side: dict[str, Any]) -> str:
    engine = side.get("engine")
    return (side.get("backend") or "-") + (f" on {engine['device']}" if engine else "")


def _toolchain_cell(side: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in side.get("toolchain", {}).items()) or "-"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def markdown(result: dict[str, Any]) -> str:
    c, b = result["candidate"], result["baseline"]
    rows = [
        (name, cell(c), cell(b), "")
        for name, cell in (("backend", _backend_cell), ("precision", _precision_cell), ("toolchain", _toolchain_cell))
    ]
    rows.append(("gates", c["gates"], b["gates"], ""))
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
    rows.append(
        ("latency p50, batch 1 (ms)", _fmt(c["p50_ms"]), _fmt(b["p50_ms"]), _fmt(_ratio(c["p50_ms"], b["p50_ms"])))
    )
    for batch, r in result["throughput_ratio"].items():
        rows.append(
            (
                f"throughput, batch {batch} (samples/s)",
                _fmt(c["throughput"][batch]),
                _fmt(b["throughput"][batch]),
                f"{r:.2f}x",
            )
        )
    rows.append(("size (MB)", _fmt(c["size_mb"]), _fmt(b["size_mb"]), _fmt(result["size_ratio"])))
    lines = [f"# {c['stage']} vs {b['stage']}", ""]
    lines += [f"> **{flag}**" for flag in result["flags"]] + ([""] if result["flags"] else [])
    lines += [f"| | {c['stage']} | {b['stage']} | ratio |", "|---|---|---|---|"]
    lines += [f"| {name} | {x} | {y} | {z} |" for name, x, y, z in rows]
    if "layers" in result:
        lines += diff_markdown(result["layers"], c["stage"], b["stage"])
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
