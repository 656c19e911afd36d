"""The end-of-run summary table: one row per stage, compact for CI logs, full on a wide terminal.

A CI log is 80 columns and not a terminal; a table that folds every figure into
its own column line there is dozens of lines per stage. So outside a wide
terminal each stage is one line (stage, status, seconds, a short why, cut to
fit) and, when it has figures, a second with two or three headline figures;
the full figures are left to the run record the footer names. A wide
terminal keeps the full table (every output and figure).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.status import Status

WIDE = 120  # a terminal at least this wide gets the full table
GAP = "  "
ELLIPSIS = "…"
STYLE = {
    Status.CACHED: "green",
    Status.PULLED: "green",
    Status.RAN: "green",
    Status.FAILED: "red",
    Status.GATE_FAILED: "red",
    Status.UNAVAILABLE: "yellow",
    Status.SKIPPED: "yellow",
    Status.NOT_RUN: "yellow",
    Status.INTERRUPTED: "red",
}
_NAMED = re.compile(r"^\w+\(.+\)$")  # a figure that names its output: top1(logits), cos(emb), iou(mask)


@dataclass(frozen=True)
class Row:
    """What the summary says about one stage; `why` is the full one-line reason, `brief` its short form."""

    stage: str
    status: Status
    why: str
    seconds: float | None = None
    brief: str = ""
    outputs: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    warnings: tuple[str, ...] = ()  # one line each under the row: what the stage warned about

    @property
    def short(self) -> str:
        return self.brief or self.why


def headline(summary: dict[str, Any], limit: int = 3) -> list[str]:
    """The figures a one-line row shows, best first, as `name=value`.

    Ranked by what the name says, so every kind is served without a list per kind:
    the gate verdict, then figures that name their output (validate's headline per
    output, its error bound last), then a stage's own self-check (`check_*`), then
    other numbers; short words last, long strings (warnings) never.
    """

    def rank(item: tuple[int, str]) -> tuple[int, int]:
        i, key = item
        value = summary[key]
        if key == "gates":
            return 0, i
        if _NAMED.match(key):
            return (2 if key.startswith("max_abs(") else 1), i
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (3 if key.startswith("check_") else 4), i
        return 5, i

    keys = [k for k in summary if k == "gates" or _scalar(summary[k])]
    ranked = sorted(enumerate(keys), key=rank)
    return [f"{k}={_fmt(summary[k])}" for _, k in ranked[:limit]]


def compact_lines(rows: list[Row], title: str, footer: list[str], width: int) -> list[tuple[str, int, int, str]]:
    """The compact table as plain lines, each at most `width` characters (the footer's paths excepted).

    A stage is one line (stage, status, seconds, why), plus a second one, indented
    under the status, with its headline figures when it has any: at 80 columns a
    why and three figures do not share a line without both being cut. Returns
    (line, start, end, style) so the caller can colour the status word.
    """
    # 24 at 80 columns: a matrix variant (`engine@onnxruntime-int8`) is read whole; the why column gives way
    w_stage = min(max([len("stage")] + [len(r.stage) for r in rows]), max(12, width * 3 // 10))
    w_status = max([len("status")] + [len(str(r.status)) for r in rows])
    secs = [_seconds(r.seconds) for r in rows]
    w_secs = max([len("s")] + [len(s) for s in secs])
    lead = w_stage + w_status + w_secs + 3 * len(GAP)
    rest = max(20, width - lead)
    indent = " " * (w_stage + len(GAP))
    out = [
        (_cut(title, width), 0, 0, ""),
        (GAP.join(["stage".ljust(w_stage), "status".ljust(w_status), "s".rjust(w_secs), "why"]), 0, 0, "bold"),
    ]
    for r, s in zip(rows, secs):
        cells = [
            _cut(r.stage, w_stage).ljust(w_stage),
            str(r.status).ljust(w_status),
            s.rjust(w_secs),
            _cut(r.short, rest),
        ]
        out.append((GAP.join(cells).rstrip(), len(indent), len(indent) + len(str(r.status)), STYLE.get(r.status, "")))
        figures = headline(r.summary)
        if figures:
            out.append((indent + _fit(figures, max(20, width - len(indent))), 0, 0, ""))
        for w in r.warnings:
            out.append(
                (indent + _cut(f"warning: {w}", max(20, width - len(indent))), len(indent), len(indent) + 8, "yellow")
            )
    out += [(line, 0, 0, "dim") for line in footer]
    return out


def footer(rows: list[Row], run_dir: str) -> list[str]:
    """Where the full story is: the run record (every figure, every reason) and the outputs' views."""
    lines = [f"full figures and reasons: {relative(os.path.join(run_dir, 'run.json'))}"] if run_dir else []
    views = {_views_root(r.stage, p) for r in rows for p in r.outputs} - {""}
    if len(views) == 1:
        lines.append(f"outputs: {relative(views.pop())}{os.sep}STAGE{os.sep} (`pipeline show RECIPE STAGE`)")
    return lines


def _views_root(stage: str, path: str) -> str:
    """`artifacts/<recipe>` from a view path `artifacts/<recipe>/<stage>/<output>` ("" if not of that shape)."""
    parts = path.split(os.sep)
    at = max((i for i, part in enumerate(parts[:-1]) if part == stage), default=0)
    return os.sep.join(parts[:at]) if at else ""


def wide_table(rows: list[Row], title: str) -> Any:
    """The full table for a wide terminal: every output path and every figure, folded in its cell."""
    from rich.markup import escape as esc
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("stage", "status", "why", "s", "outputs / figures"):
        table.add_column(col, overflow="fold")
    for r in rows:
        style = STYLE.get(r.status, "")
        plain = r.status in (Status.CACHED, Status.PULLED, Status.RAN)
        status = f"[{style}]{r.status}[/]" if style and not plain else str(r.status)
        if r.status.failed:
            detail = f"log: {r.log}"
        else:
            detail = "\n".join(relative(p) for p in r.outputs) + _all_figures(r.summary)
        why = "\n".join([r.why, *(f"warning: {w}" for w in r.warnings)])
        table.add_row(r.stage, status, esc(why), _seconds(r.seconds), esc(detail))
    return table


def relative(path: str) -> str:
    """Paths under the working directory are shown relative to it: shorter, still clickable."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _all_figures(summary: dict[str, Any]) -> str:
    parts = [f"{k}={_fmt(v)}" for k, v in summary.items() if isinstance(v, (int, float, str, bool))]
    return ("\n" + ", ".join(parts)) if parts else ""


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= 24)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _seconds(s: float | None) -> str:
    return "-" if s is None else f"{s:.1f}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


def _fit(figures: list[str], width: int) -> str:
    """As many whole figures as fit; the first is cut only when it alone is too long."""
    out = ""
    for f in figures:
        joined = f"{out}, {f}" if out else f
        if len(joined) > width:
            break
        out = joined
    return out or _cut(figures[0], width) if figures else ""
