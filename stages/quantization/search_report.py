"""quantize.search's report: one `SearchReport` makes report.json, report.md, pareto.svg and the summary row.

report.json lists every trial (its setting, why it was tried, whether the
search moved there, each gate's figure with pass/fail and margin, its latency
with the interval, whether the cache served it), the sensitivity ranking, the
choice with its float operations as an IgnoredScope (types and patterns) ready
for quantize.nncf, the gates of the default setting and of the choice on both
the search and the held-out samples, and the numbers behind pareto.svg.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stages.quantization.search_run import SearchResult


@dataclass
class SearchReport:
    result: SearchResult

    @cached_property
    def data(self) -> dict[str, Any]:
        r, run = self.result, self.result.run
        p = run.ctx.params
        trials = []
        for step in r.steps:
            t = run.trials[step.setting]
            s = step.scored
            trials.append(
                {
                    "index": s.index,
                    "why": step.why,
                    "moved_here": step.kept,
                    "setting": step.setting.to_json(),
                    "describe": s.label,
                    "cached": t.cached,
                    "seconds": round(t.seconds, 3),
                    "key": t.key[:16],
                    "latency": s.latency.to_json(),
                    "passed": s.passed,
                    "worst_margin": _finite(s.worst_margin),
                    "gates": [v.to_json() for v in s.verdicts],
                    "float_ops": s.float_ops,
                    "float_op_names": t.summary.get("float_op_names", []),
                    "int8_ops": t.summary.get("int8_ops"),
                }
            )
        default = r.steps[0].scored
        data: dict[str, Any] = {
            "objective": {
                "kind": p.objective,
                "batch": p.throughput_batch if p.objective == "throughput" else 1,
                "inference_precision": p.inference_precision,
                "repeats": p.repeats,
                "unit": "ms per request (p50)" if p.objective == "latency" else "ms per sample",
            },
            "budget": {"max_trials": p.max_trials, "max_minutes": p.max_minutes, "stopped": r.stopped},
            "samples": run.judge.splits.counts(),
            "model_type": {"transformer": run.transformer, "why": run.model_type_why},
            "float": {"latency": r.float_latency.to_json()},
            "trials": trials,
            "rankings": run.rankings,
            "trials_computed": sum(1 for t in trials if not t["cached"]),
            "trials_cached": sum(1 for t in trials if t["cached"]),
            "default": {
                "index": 0,
                "latency": default.latency.to_json(),
                "search": [v.to_json() for v in default.verdicts],
                "holdout": [v.to_json() for v in r.holdout.get("default", ())],
            },
            "chosen": None,
            "nearest": r.failures if r.chosen is None else [],
        }
        if r.final is not None:
            s, names = r.final.scored, run.trials[r.final.setting].summary.get("float_op_names", [])
            scope = r.final.setting.float_ops.to_json()
            data["chosen"] = {
                "index": s.index,
                "setting": r.final.setting.to_json(),
                "describe": s.label,
                "ignored_scope": {k: v for k, v in scope.items() if v},
                "float_op_names": names,
                "latency": s.latency.to_json(),
                "speedup_vs_float": round(r.float_latency.ms / s.latency.ms, 3),
                "speedup_vs_default": round(default.latency.ms / s.latency.ms, 3),
                "search": [v.to_json() for v in s.verdicts],
                "holdout": [v.to_json() for v in r.holdout.get("chosen", ())],
                "holdout_passed": all(v.passed for v in r.holdout["chosen"]) if r.holdout.get("chosen") else None,
            }
        data["pareto"] = self._pareto(data)
        return data

    def _pareto(self, data: dict[str, Any]) -> dict[str, Any]:
        """The gate the default setting misses most (else its closest), each trial's figure on it, and latency."""
        r = self.result
        binding = min(r.steps[0].scored.verdicts, key=lambda v: (v.margin, v.gate), default=None)
        numeric = binding is not None and not isinstance(binding.observed, bool)
        points = []
        for step in r.steps:
            s = step.scored
            v = next((v for v in s.verdicts if binding and (v.gate, v.output) == (binding.gate, binding.output)), None)
            if not numeric or v is None or not isinstance(v.observed, (int, float)):
                continue
            lat = s.latency
            points.append(
                {
                    "label": f"#{s.index}",
                    "latency_ms": lat.ms,
                    "latency_low_ms": lat.low_ms,
                    "latency_high_ms": lat.high_ms,
                    "figure": float(v.observed),
                    "passed": s.passed,
                }
            )
        chosen = data["chosen"]
        return {
            "gate": f"{binding.gate} on {binding.output}" if binding is not None else None,
            "threshold": binding.threshold if numeric and binding is not None else None,
            "chosen": f"#{chosen['index']}" if chosen else None,
            "points": points,
        }

    def json_text(self) -> str:
        return json.dumps(self.data, indent=1, sort_keys=True, allow_nan=False) + "\n"

    def draw(self, directory: Path) -> None:
        from stages.common.plots import pareto_svg

        pareto = self.data["pareto"]
        threshold = pareto["threshold"]
        pareto_svg(
            directory / "pareto.svg",
            pareto["points"],
            pareto["gate"] or "no numeric gate",
            float(threshold) if threshold is not None else None,
            pareto["chosen"],
        )

    def summary(self) -> dict[str, Any]:
        d = self.data
        row: dict[str, Any] = {"trials": len(d["trials"]), "cached": d["trials_cached"]}
        c = d["chosen"]
        if c is not None:
            row.update(
                chosen=f"#{c['index']} {c['describe']}",
                float_ops=len(c["float_op_names"]),
                speedup_vs_float=c["speedup_vs_float"],
                speedup_vs_default=c["speedup_vs_default"],
            )
        return row

    def markdown(self) -> str:
        d, r = self.data, self.result
        obj = d["objective"]
        lines = [f"# quantize.search: {r.run.ctx.stage}", ""]
        c = d["chosen"]
        if c is None:
            lines += ["**No trial passes every gate: there is no best.**", ""]
            lines += [f"- {line}" for line in r.failures] + [""]
        else:
            n = d["samples"]["holdout"]
            held = (
                f"{'passes' if c['holdout_passed'] else '**fails**'} every gate on the {n} held-out samples"
                if n
                else "no sample of val was held out: confirmed on nothing"
            )
            lines += [
                f"**Chosen: trial {c['index']}** ({c['describe']}): {c['latency']['ms']:.3f} {obj['unit']}, "
                f"{c['speedup_vs_float']:.2f}x the float engine, {c['speedup_vs_default']:.2f}x the default INT8; "
                f"{held}.",
                "",
            ]
            if c["ignored_scope"]:
                lines += [
                    "Kept in float (quantize.nncf `ignored_scope`):",
                    "",
                    "```yaml",
                    "ignored_scope: " + json.dumps(c["ignored_scope"], sort_keys=True),
                    "```",
                    "",
                    f"matching {len(c['float_op_names'])} operations: "
                    + ", ".join(f"`{n}`" for n in c["float_op_names"]),
                    "",
                ]
        lines += ["![pareto](plots/pareto.svg)", "", "## Default setting against the choice", ""]
        lines += [
            "| gate | default (search) | default (held out) | chosen (search) | chosen (held out) |",
            "|---|---|---|---|---|",
        ]
        chosen = c or {"search": [], "holdout": []}
        for v in d["default"]["search"]:
            at = (v["gate"], v["output"])
            cells = [
                _cell(d["default"]["search"], at),
                _cell(d["default"]["holdout"], at),
                _cell(chosen["search"], at),
                _cell(chosen["holdout"], at),
            ]
            gate = f"{v['gate']} on {v['output']} (threshold {_g(v['threshold'])})"
            lines.append(f"| {gate} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"## Trials ({len(d['trials'])}: {d['trials_computed']} computed, {d['trials_cached']} from the cache; "
            f"stopped: {d['budget']['stopped']})",
            "",
            f"Objective: {obj['kind']} at batch {obj['batch']}, {obj['inference_precision']}, median of "
            f"{obj['repeats']} timings [range]; float engine {d['float']['latency']['ms']:.3f} ms. "
            f"Samples: {d['samples']['search']} to choose, {d['samples']['holdout']} held out.",
            "",
            "| # | setting | why | moved | passed | worst margin | latency ms [range] | float ops | cached |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in d["trials"]:
            lat = t["latency"]
            margin = "—" if t["worst_margin"] is None else f"{t['worst_margin']:+.2f}"
            lines.append(
                f"| {t['index']} | {t['describe']} | {t['why']} | {'yes' if t['moved_here'] else ''} | "
                f"{'PASS' if t['passed'] else 'FAIL'} | {margin} | {lat['ms']:.3f} [{lat['low_ms']:.3f}, "
                f"{lat['high_ms']:.3f}] | {t['float_ops']} | {'yes' if t['cached'] else ''} |"
            )
        return "\n".join(lines) + "\n"


def _finite(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def _g(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _cell(verdicts: list[dict[str, Any]], at: tuple[str, str]) -> str:
    """The verdict of gate `at` = (gate, output) among `verdicts`, as a table cell."""
    v = next((v for v in verdicts if (v["gate"], v["output"]) == at), None)
    if v is None:
        return "—"
    obs = v["observed"]
    shown = _g(round(obs, 4)) if isinstance(obs, float) else str(obs)
    return f"{shown} {'pass' if v['passed'] else '**FAIL**'}"
