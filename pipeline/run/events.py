"""What the executor tells reporters. The executor holds no terminal code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.status import Status


@dataclass(frozen=True)
class RunStarted:
    recipe: str
    run_id: str
    stages: list[str]


@dataclass(frozen=True)
class StageCached:
    stage: str
    kind: str
    outputs: dict[str, str]  # output name -> view path
    summary: dict[str, Any] = field(default_factory=dict)  # the figures recorded when it was built
    built: str = ""  # when it was built (ISO 8601, UTC)
    on_remote: bool = False  # its outputs stay on the remote cache (a run before this one left them there)
    warnings: tuple[str, ...] = ()  # what it warned about when it was built


@dataclass(frozen=True)
class StagePulled:
    """Served by the remote cache: nothing ran here."""

    stage: str
    kind: str
    outputs: dict[str, str]  # output name -> view path (empty while its objects stay on the remote)
    summary: dict[str, Any] = field(default_factory=dict)
    built: str = ""
    downloaded: int = 0  # bytes this stage's pull downloaded
    local: bool = False  # its outputs are in the local cache now
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageStarted:
    stage: str
    kind: str
    reasons: tuple[str, ...]
    log: str


@dataclass(frozen=True)
class StageWaiting:
    stage: str
    why: str  # e.g. "another run (pid 123) is building it"


@dataclass(frozen=True)
class StageProgress:
    stage: str
    done: float
    total: float | None
    desc: str = ""


@dataclass(frozen=True)
class StageFinished:
    stage: str
    kind: str
    reasons: tuple[str, ...]
    seconds: float
    outputs: dict[str, str]
    summary: dict[str, Any]
    same_as_before: bool
    built_elsewhere: bool = False
    node: str = ""  # the cluster node that ran it (--executor ray)
    warnings: tuple[str, ...] = ()  # what it warned about (StageContext.warn)
    trials: tuple[dict[str, Any], ...] = ()  # its trials (`Trial.row`), computed or from the cache


@dataclass(frozen=True)
class StageErrored:
    """A stage ran and failed (raised, its worker died, or a gate failed)."""

    stage: str
    kind: str
    error: str
    log: str
    seconds: float
    gate: bool = False
    kept: str = ""  # the stage's outputs as far as it got (a failed gate's reports), kept for inspection
    node: str = ""  # the cluster node that ran it (--executor ray)
    warnings: tuple[str, ...] = ()  # what it warned about before it failed (often the cause)
    trials: tuple[dict[str, Any], ...] = ()  # the trials it finished before it failed (kept in the cache)


@dataclass(frozen=True)
class StageUnavailable:
    stage: str
    kind: str
    reason: str


@dataclass(frozen=True)
class StageSkipped:
    stage: str
    kind: str
    because: str


@dataclass(frozen=True)
class StageNotRun:
    """The run stopped (a stage failed, no --keep-going) before this stage's turn."""

    stage: str
    kind: str


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    seconds: float
    exit_code: int
    counts: dict[Status, int] = field(default_factory=dict)
    run_dir: str = ""  # runs/<run id>/: run.json (every figure) and the logs
    remote: dict[str, int] = field(default_factory=dict)  # bytes and objects moved to and from the remote


Event = (
    RunStarted
    | StageCached
    | StagePulled
    | StageStarted
    | StageWaiting
    | StageProgress
    | StageFinished
    | StageErrored
    | StageUnavailable
    | StageSkipped
    | StageNotRun
    | RunFinished
)


class Reporter(Protocol):
    def handle(self, event: Event) -> None: ...


class Fanout:
    """Sends each event to several reporters (console + run record)."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def handle(self, event: Event) -> None:
        for r in self.reporters:
            r.handle(event)
