"""`pipeline status`: every stage by the one up-to-date rule (pipeline/run/freshness.py), plus whether the
lock file records each current key. Up to date only when all of them are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.cache.lockfile import lock_path, read_lock
from pipeline.ops.project import Project
from pipeline.run.freshness import StageState, states

if TYPE_CHECKING:
    from pipeline.remote.store import Remote


@dataclass(frozen=True)
class StatusResult:
    stages: tuple[StageState, ...]

    @property
    def up_to_date(self) -> bool:
        return all(s.current for s in self.stages)


def status(project: Project, remote: Remote | None = None, skip_unavailable: bool = False) -> StatusResult:
    decisions = project.plan(remote, skip_unavailable)
    lock = read_lock(lock_path(project.recipe.path))
    return StatusResult(tuple(states(project.recipe, project.cache, decisions, lock)))
