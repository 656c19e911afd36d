"""What a run is asked to do (`RunOptions`, from `pipeline run`'s flags) and how it ended (`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.status import Status


@dataclass(frozen=True)
class RunOptions:
    targets: tuple[str, ...] = ()
    force: tuple[str, ...] = ()
    force_all: bool = False
    keep_going: bool = False
    jobs: int = 1
    in_process: bool = False
    skip_unavailable: bool = False
    executor: str = "local"  # or "ray": every stage a Ray task, artifacts through the remote store
    ray_address: str | None = None


@dataclass
class RunResult:
    run_id: str
    exit_code: int
    status: dict[str, Status] = field(default_factory=dict)  # stage -> how it ended
