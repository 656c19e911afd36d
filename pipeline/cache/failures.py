"""How a stage failed, remembered by its key: `plan`, `status` and `pipeline summary` say `failed`, with
the error, the time and the reports the stage wrote before it failed (a failed gate's report.md).

A failure is never served: a stage whose key failed runs again on the next run (its inputs may be
unchanged, but the cause can lie outside the key: a GPU that ran out of memory, a timing gate on a busy
machine), the way make and Bazel retry a failed action. Only what happened is kept, so nobody reads
"never built" about a stage whose report says why it failed. A success under the same key removes it.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.cache.records import OutputRecord, write_json_atomic
from pipeline.status import Status


@dataclass(frozen=True)
class FailureRecord:
    key: str
    stage: str
    kind: str
    status: Status  # FAILED or GATE_FAILED
    error: str  # the one line the run printed
    created: str  # when (ISO 8601, UTC)
    run_id: str
    log: str  # the log that holds the traceback, while the run's folder is kept
    reports: dict[str, OutputRecord] = field(default_factory=dict)  # declared outputs it wrote, stored
    warnings: tuple[str, ...] = ()

    @classmethod
    def now(cls, key: str, stage: str, kind: str, status: Status, error: str) -> FailureRecord:
        """A failure that happened just now (the caller adds the run, the log, the reports, the warnings)."""
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return cls(key, stage, kind, status, error, created, run_id="", log="")

    def describe(self) -> str:
        """`gate failed 2026-12-07 10:04 UTC: cosine_min ...` (the reason rows of plan and status)."""
        error = self.error.removeprefix(f"{self.status}: ")  # a gate's error already says `gate failed:`
        return f"{self.status} {self.created.replace('T', ' ')[:16]} UTC: {error}"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "stage": self.stage,
            "kind": self.kind,
            "status": str(self.status),
            "error": self.error,
            "created": self.created,
            "run_id": self.run_id,
            "log": self.log,
            "reports": {k: v.to_json() for k, v in self.reports.items()},
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FailureRecord:
        return cls(
            key=str(data["key"]),
            stage=str(data["stage"]),
            kind=str(data["kind"]),
            status=Status(data["status"]),
            error=str(data["error"]),
            created=str(data["created"]),
            run_id=str(data.get("run_id", "")),
            log=str(data.get("log", "")),
            reports={k: OutputRecord(**v) for k, v in (data.get("reports") or {}).items()},
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
        )


class FailureStore:
    """`failures/<key>.json` under the cache root; an unreadable one is no failure (it only informs)."""

    def __init__(self, root: Path):
        self.root = root / "failures"

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str | None) -> FailureRecord | None:
        if not key or not key.isalnum():
            return None
        try:
            return FailureRecord.from_json(json.loads(self._path(key).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, failure: FailureRecord) -> None:
        write_json_atomic(self._path(failure.key), failure.to_json())

    def remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def all(self) -> list[FailureRecord]:
        found = (self.get(p.stem) for p in sorted(self.root.glob("*.json")))
        return [f for f in found if f is not None]
