"""The run record: one row per stage, written to runs/<run id>/run.json and printed by `--json`. It only
listens to events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.cache.records import write_json_atomic
from pipeline.run import events as ev
from pipeline.status import Status

NOT_RUN = "the run stopped after a failure (--keep-going runs independent stages)"


class RunRecordReporter:
    """Collects one row per stage; writes runs/<run id>/run.json and serves --json."""

    def __init__(self, runs_dir: Path, recipe_path: Path):
        self.runs_dir, self.recipe_path = runs_dir, recipe_path
        self.rows: dict[str, dict[str, Any]] = {}
        self.run: dict[str, Any] = {}

    def handle(self, event: ev.Event) -> None:
        self._handle(event)
        said = getattr(event, "warnings", ())
        if said:
            self.rows[event.stage]["warnings"] = list(said)  # type: ignore[union-attr]
        trials = getattr(event, "trials", ())
        if trials:
            self.rows[event.stage]["trials"] = trial_counts(trials)  # type: ignore[union-attr]

    def _handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.run = {
                "run_id": event.run_id,
                "recipe": event.recipe,
                "recipe_path": str(self.recipe_path),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            self.rows = {s: {"stage": s, "status": Status.PENDING} for s in event.stages}
        elif isinstance(event, ev.StageCached):
            self.rows[event.stage].update(
                status=Status.CACHED,
                kind=event.kind,
                outputs=event.outputs,
                seconds=0.0,
                summary=event.summary,
                built=event.built,
                **({"local": False} if event.on_remote else {}),
            )
        elif isinstance(event, ev.StagePulled):
            self.rows[event.stage].update(
                status=Status.PULLED,
                kind=event.kind,
                outputs=event.outputs,
                seconds=0.0,
                summary=event.summary,
                built=event.built,
                downloaded=event.downloaded,
                local=event.local,
            )
        elif isinstance(event, ev.StageStarted):
            self.rows[event.stage].update(
                status=Status.RUNNING, kind=event.kind, reasons=list(event.reasons), log=event.log
            )
        elif isinstance(event, ev.StageFinished):
            self.rows[event.stage].update(
                status=Status.CACHED if event.built_elsewhere else Status.RAN,
                kind=event.kind,
                reasons=list(event.reasons),
                seconds=round(event.seconds, 3),
                outputs=event.outputs,
                summary=event.summary,
                same_output_as_before=event.same_as_before,
            )
            if event.node:
                self.rows[event.stage]["node"] = event.node
        elif isinstance(event, ev.StageErrored):
            self.rows[event.stage].update(
                status=Status.GATE_FAILED if event.gate else Status.FAILED,
                kind=event.kind,
                error=event.error,
                log=event.log,
                kept=event.kept,
                seconds=round(event.seconds, 3),
            )
            if event.node:
                self.rows[event.stage]["node"] = event.node
        elif isinstance(event, ev.StageUnavailable):
            self.rows[event.stage].update(status=Status.UNAVAILABLE, kind=event.kind, reason=event.reason)
        elif isinstance(event, ev.StageSkipped):
            self.rows[event.stage].update(status=Status.SKIPPED, kind=event.kind, reason=f"upstream: {event.because}")
        elif isinstance(event, ev.StageNotRun):
            self.rows[event.stage].update(status=Status.NOT_RUN, kind=event.kind, reason=NOT_RUN)
        elif isinstance(event, ev.RunFinished):
            self.run.update(seconds=round(event.seconds, 3), exit_code=event.exit_code)
            if event.remote:
                self.run["remote"] = event.remote
            write_json_atomic(self.runs_dir / event.run_id / "run.json", self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {**self.run, "stages": [{**row, "status": str(row["status"])} for row in self.rows.values()]}


def trial_counts(trials: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """A stage's trials as the run record lists them: how many were computed, how many the cache served."""
    cached = sum(1 for t in trials if t.get("cached"))
    return {"computed": len(trials) - cached, "cached": cached, "list": list(trials)}
