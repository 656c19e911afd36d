"""The live console view (rich): a line per running stage, then the summary table. It only listens to events."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from pipeline.report.record import NOT_RUN
from pipeline.report.summary import WIDE, Row, compact_lines, footer, relative, wide_table
from pipeline.run import events as ev
from pipeline.status import Status

NOT_RUN_BRIEF = "stopped by a failure; see --keep-going"


class ConsoleReporter:
    """A live line per running stage (spinner or bar, elapsed time), then a summary table."""

    def __init__(self, stream: Any = None, quiet: bool = False):
        from rich.console import Console

        # a line per event, never wrapped (CI logs are 80 columns)
        self.console = Console(file=stream or sys.stderr, highlight=False, quiet=False, soft_wrap=True)
        self.quiet = quiet
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._rows: list[Row] = []
        self._order: list[str] = []

    def _add_row(self, row: Row) -> None:
        """A stage's row in the summary; a stage settled twice (pulled, then rebuilt here) keeps its last."""
        for i, old in enumerate(self._rows):
            if old.stage == row.stage:
                self._rows[i] = row
                return
        self._rows.append(row)

    def _bar(self) -> Any:
        if self._progress is None:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.fields[stage]}[/] {task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self._progress

    def handle(self, event: ev.Event) -> None:
        if self.quiet and not isinstance(event, (ev.RunStarted, ev.RunFinished, ev.StageErrored)):
            self._remember_row(event)
            return
        self._show(event)

    def _remember_row(self, event: ev.Event) -> None:
        """In quiet mode: no live lines, but the summary table still gets every row."""
        live = self.console.quiet
        self.console.quiet = True
        try:
            self._show(event)
        finally:
            self.console.quiet = live

    def _show(self, event: ev.Event) -> None:
        from rich.markup import escape as esc  # reasons and errors are data: `.[tensorrt]` is not markup

        c = self.console
        if isinstance(event, ev.RunStarted):
            self._order = list(event.stages)
            self._rows = []
        elif isinstance(event, ev.StageCached):
            where = " (outputs left on the remote)" if event.on_remote else ""
            c.print(f"[green]cached[/]  {event.stage} ({event.kind}){where}")
            when = event.built.replace("T", " ")
            self._add_row(
                Row(
                    event.stage,
                    Status.CACHED,
                    (f"unchanged, built {when[:16]} UTC" if event.built else "unchanged")
                    + ("; on the remote" if event.on_remote else ""),
                    brief=f"unchanged, built {when[5:16]}" if event.built else "",
                    outputs=tuple(event.outputs.values()),
                    summary=event.summary,
                    warnings=event.warnings,
                )
            )
        elif isinstance(event, ev.StagePulled):
            got = f", {_mb(event.downloaded)} downloaded" if event.downloaded else ""
            where = "" if event.local else " (outputs left on the remote)"
            c.print(f"[green]pulled[/]  {event.stage} ({event.kind}){got}{where}")
            self._add_row(
                Row(
                    event.stage,
                    Status.PULLED,
                    f"from the remote{got}" if event.local else "on the remote; not downloaded",
                    outputs=tuple(event.outputs.values()),
                    summary=event.summary,
                    warnings=event.warnings,
                )
            )
        elif isinstance(event, ev.StageStarted):
            c.print(f"[cyan]running[/] {event.stage} ({event.kind}): {esc('; '.join(event.reasons))}")
            if not self.quiet:
                self._tasks[event.stage] = self._bar().add_task(event.kind, total=None, stage=event.stage)
        elif isinstance(event, ev.StageWaiting):
            c.print(f"[yellow]waiting[/] {event.stage}: {esc(event.why)}")
        elif isinstance(event, ev.StageProgress):
            task = self._tasks.get(event.stage)
            if task is not None:
                self._bar().update(
                    task,
                    completed=event.done,
                    total=event.total,
                    description=event.desc or self._bar().tasks[task].description,
                )
        elif isinstance(event, ev.StageFinished):
            self._end_task(event.stage)
            if event.built_elsewhere:
                c.print(f"[green]cached[/]  {event.stage} ({event.kind}): built by another run")
                self._add_row(
                    Row(
                        event.stage,
                        Status.CACHED,
                        "built by another run",
                        outputs=tuple(event.outputs.values()),
                        warnings=event.warnings,
                    )
                )
                return
            note = "; same output as before" if event.same_as_before else ""
            c.print(f"[green]done[/]    {event.stage} in {event.seconds:.1f}s{note}")
            for w in event.warnings:
                c.print(f"[yellow]warning[/] {event.stage}: {esc(w)}")
            self._add_row(
                Row(
                    event.stage,
                    Status.RAN,
                    "; ".join(event.reasons) + note,
                    event.seconds,
                    outputs=tuple(event.outputs.values()),
                    summary=event.summary,
                    warnings=event.warnings,
                )
            )
        elif isinstance(event, ev.StageErrored):
            self._end_task(event.stage)
            if event.gate:  # the reports that say why are what the user wants next
                c.print(
                    f"[red]GATE FAILED[/]  stage {event.stage}: {esc(event.error.removeprefix('gate failed: '))} "
                    f"(reports: {esc(relative(event.kept))}) (log: {esc(event.log)})"
                )
            else:
                c.print(f"[red]FAILED[/]  stage {event.stage} failed: {esc(event.error)} (log: {esc(event.log)})")
            for w in event.warnings:
                c.print(f"[yellow]warning[/] {event.stage}: {esc(w)}")
            self._add_row(
                Row(
                    event.stage,
                    Status.GATE_FAILED if event.gate else Status.FAILED,
                    event.error,
                    event.seconds,
                    brief=event.error.removeprefix("gate failed: "),
                    log=event.log,
                    warnings=event.warnings,
                )
            )
        elif isinstance(event, ev.StageUnavailable):
            c.print(f"[yellow]skipped[/] {event.stage}: {esc(event.reason)}")
            self._add_row(Row(event.stage, Status.UNAVAILABLE, event.reason))
        elif isinstance(event, ev.StageSkipped):
            self._add_row(Row(event.stage, Status.SKIPPED, f"upstream: {event.because}"))
        elif isinstance(event, ev.StageNotRun):
            self._add_row(Row(event.stage, Status.NOT_RUN, NOT_RUN, brief=NOT_RUN_BRIEF))
        elif isinstance(event, ev.RunFinished):
            if self._progress is not None:
                self._progress.stop()
            self._summary(event)

    def _end_task(self, stage: str) -> None:
        task = self._tasks.pop(stage, None)
        if task is not None and self._progress is not None:
            self._progress.remove_task(task)

    def _summary(self, event: ev.RunFinished) -> None:
        """The full table on a wide terminal; one line per stage anywhere else (a CI log, 80 columns)."""
        from rich.text import Text

        title = f"run {event.run_id}: {event.seconds:.1f}s, exit {event.exit_code}"
        if event.remote:
            r = event.remote
            title += f"; remote: {_mb(r.get('downloaded', 0))} down, {_mb(r.get('uploaded', 0))} up"
        if self.console.is_terminal and self.console.width >= WIDE:
            self.console.print(wide_table(self._rows, title))
            return
        for line, start, end, style in compact_lines(
            self._rows, title, footer(self._rows, event.run_dir), self.console.width
        ):
            text = Text(line)
            if style and end > start:
                text.stylize(style, start, end)
            elif style:
                text.stylize(style)
            self.console.print(text)


def dump_json(data: Any, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    out.flush()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"
