"""report.compare's per-layer differences: two validate reports' `layers`, side by side.

Layers are matched by name (an FP32 and an INT8 IR of one model keep most
node names, and an IR converted from ONNX keeps the ONNX node names); the rest
of each side, which the other engine fused, split or named differently, is
summed per layer type. Two profiles taken on different inputs (a fixed-batch
engine against one profiled at batch 1) are compared with a warning. Each row
holds both sides' time and precision and the time delta (candidate -
baseline); rows are sorted by the size of the delta, so the layers that gained
or lost most come first. A report from before validate profiled layers (no
`layers`) gives a note, not an error.
"""

from __future__ import annotations

from typing import Any, Mapping

SHOWN = 20  # matched layers compare.md lists (compare.json holds them all)


def _side_layers(report: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    layers = report.get("layers")
    return layers if isinstance(layers, list) and layers else None


def _why_none(report: Mapping[str, Any], name: str) -> str:
    if "layers" not in report:
        return f"{name} ({report.get('stage')}) has no per-layer profile: a report from before validate profiled layers"
    note = (report.get("layer_summary") or {}).get("note")
    return f"{name} ({report.get('stage')}) has no per-layer profile" + (f": {note}" if note else "")


def _time(layers: list[dict[str, Any]]) -> float | None:
    times = [r["time_ms"] for r in layers if isinstance(r.get("time_ms"), (int, float))]
    return sum(times) if times else None


def _delta(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _order(row: dict[str, Any]) -> tuple[int, float]:
    """Largest |delta| first; rows without one (an untimed side) last."""
    d = row["delta_ms"]
    return (0, -abs(d)) if d is not None else (1, 0.0)


def layer_diff(cand: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """compare.json's `layers`: `matched` (by name: each side's type, kernel, precision, time; the delta),
    `by_type` (the unmatched layers summed per type), each side's summed layer time and precision shares; or
    `note` when a side has no profile."""
    cl, bl = _side_layers(cand), _side_layers(base)
    if cl is None or bl is None:
        sides = ((cand, "candidate", cl), (base, "baseline", bl))
        notes = [_why_none(r, n) for r, n, layers in sides if layers is None]
        return {"note": "; ".join(notes)}
    by_name = {r["name"]: r for r in bl}
    matched = []
    for r in cl:
        other = by_name.pop(r["name"], None)
        if other is None:
            continue
        matched.append(
            {
                "name": r["name"],
                "candidate": _cols(r),
                "baseline": _cols(other),
                "delta_ms": _delta(r.get("time_ms"), other.get("time_ms")),
            }
        )
    names = {m["name"] for m in matched}
    groups: dict[str, dict[str, Any]] = {}
    unmatched = (("candidate", [r for r in cl if r["name"] not in names]), ("baseline", list(by_name.values())))
    for side, layers in unmatched:
        for r in layers:
            g = groups.setdefault(r.get("type") or "?", {"type": r.get("type") or "?"})
            g.setdefault(side, []).append(r)
    by_type = []
    for g in groups.values():
        row: dict[str, Any] = {"type": g["type"]}
        for side in ("candidate", "baseline"):
            rows = g.get(side, [])
            row[side] = {
                "layers": len(rows),
                "time_ms": _time(rows),
                "precisions": sorted({r.get("precision") or "unknown" for r in rows}),
            }
        # a side with none of this type counts 0 ms; a side with untimed layers leaves the delta unknown
        a, b = (0.0 if row[n]["layers"] == 0 else row[n]["time_ms"] for n in ("candidate", "baseline"))
        row["delta_ms"] = _delta(a, b)
        by_type.append(row)
    summaries = {n: r.get("layer_summary") or {} for n, r in (("candidate", cand), ("baseline", base))}
    warnings = []
    inputs = {n: s.get("input") for n, s in summaries.items()}
    if inputs["candidate"] != inputs["baseline"]:  # e.g. a fixed-batch-8 engine against one profiled at batch 1
        warnings.append(
            f"the layers were profiled on different inputs (candidate {inputs['candidate']}, baseline "
            f"{inputs['baseline']}): their times compare different work"
        )
    return {
        "warnings": warnings,
        "matched": sorted(matched, key=_order),
        "by_type": sorted(by_type, key=_order),
        "sum_ms": {"candidate": _time(cl), "baseline": _time(bl)},
        "precision_share": {n: s.get("precision_share", {}) for n, s in summaries.items()},
        "layers": {"candidate": len(cl), "baseline": len(bl)},
    }


def _cols(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: r.get(k) for k in ("type", "kernel", "precision", "time_ms")}


def diff_markdown(diff: Mapping[str, Any], cand: str, base: str) -> list[str]:
    """compare.md's `## Layers`: summed layer time and precision shares per side, the matched layers with the
    largest deltas, and the unmatched layers per type."""
    lines = ["", "## Layers", ""]
    if "note" in diff:
        return lines + [f"_{diff['note']}_"]
    s, shares = diff["sum_ms"], diff["precision_share"]
    lines += [f"**Warning:** {w}." for w in diff.get("warnings", [])] + ([""] if diff.get("warnings") else [])
    lines += [f"| | {cand} | {base} | delta |", "|---|---|---|---|"]
    lines.append(f"| layers profiled | {diff['layers']['candidate']} | {diff['layers']['baseline']} | |")
    lines.append(
        f"| summed layer time (ms) | {_ms(s['candidate'])} | {_ms(s['baseline'])} | "
        f"{_ms(_delta(s['candidate'], s['baseline']), sign=True)} |"
    )
    for p in dict.fromkeys([*shares["candidate"], *shares["baseline"]]):
        a, b = shares["candidate"].get(p), shares["baseline"].get(p)
        lines.append(f"| time in {p} | {_pct(a)} | {_pct(b)} | |")
    matched = diff["matched"]
    if matched:
        lines += [
            "",
            f"Layers matched by name ({len(matched)}), largest time change first"
            + (f" (first {SHOWN}; compare.json holds all)" if len(matched) > SHOWN else "")
            + ":",
            "",
            f"| layer | type | {cand} ms | {cand} precision | {base} ms | {base} precision | delta ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in matched[:SHOWN]:
            c, b = m["candidate"], m["baseline"]
            kind = c["type"] if c["type"] == b["type"] else f"{c['type']} / {b['type']}"
            lines.append(
                f"| {_name(m['name'])} | {kind} | {_ms(c['time_ms'])} | {c['precision'] or '—'} | "
                f"{_ms(b['time_ms'])} | {b['precision'] or '—'} | {_ms(m['delta_ms'], sign=True)} |"
            )
    if diff["by_type"]:
        lines += [
            "",
            "Layers without a match in the other engine, summed by type:",
            "",
            f"| type | {cand} layers | {cand} ms | {cand} precision | {base} layers | {base} ms | {base} precision "
            "| delta ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for g in diff["by_type"]:
            c, b = g["candidate"], g["baseline"]
            lines.append(
                f"| {_name(g['type'])} | {c['layers']} | {_ms(c['time_ms'])} | {', '.join(c['precisions']) or '—'} "
                f"| {b['layers']} | {_ms(b['time_ms'])} | {', '.join(b['precisions']) or '—'} "
                f"| {_ms(g['delta_ms'], sign=True)} |"
            )
    return lines


def _name(text: str, width: int = 60) -> str:
    text = str(text).replace("|", "\\|") or "—"
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width // 2 - 1) :]


def _ms(v: float | None, sign: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.4f}" if sign else f"{v:.4f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"
