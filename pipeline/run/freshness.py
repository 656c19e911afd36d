"""Whether a stage is up to date: one rule, which `pipeline status` and `pipeline summary` share.

Up to date means the result for the recipe as it is now is in the cache, here or on the remote: the plan
found its current key (`cached` or `pulled`). A stage that failed under that key says so (`failed`, `gate
failed`); one that can never run here is `unavailable`; one never built under any key is `not built`;
anything else that would run is `stale`, with the plan's reasons. `pipeline status` asks one more
question with the same rule, whether the lock file records the current key (the lock file is what a
project commits); `pipeline summary` reads content and leaves the lock file alone (a `--set` variant
never writes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from pipeline.cache import Cache
from pipeline.recipe.load import Recipe
from pipeline.run.plan import Decision
from pipeline.status import Status


@dataclass(frozen=True)
class StageState:
    stage: str
    status: Status  # UP_TO_DATE, STALE, NOT_BUILT, UNAVAILABLE, FAILED or GATE_FAILED
    reasons: tuple[str, ...] = ()
    decision: Decision | None = None

    @property
    def current(self) -> bool:
        return self.status == Status.UP_TO_DATE


def state(recipe: Recipe, cache: Cache, d: Decision, lock: dict[str, Any] | None = None) -> StageState:
    """`d`'s stage by the rule above; with `lock` (a lock file's entries), also whether it records the key."""
    if d.status == Status.UNAVAILABLE:
        return StageState(d.stage, Status.UNAVAILABLE, d.reasons, d)
    if d.failure is not None:
        said = tuple(f"warning: {w}" for w in d.failure.warnings)
        return StageState(d.stage, d.failure.status, (*d.reasons, *said), d)
    if d.status in (Status.CACHED, Status.PULLED):
        locked = lock.get(d.stage, {}).get("key") if lock is not None else d.key
        if locked != d.key:
            why = "not in the lock file" if locked is None else "lock file holds another key"
            return StageState(d.stage, Status.STALE, (f"{why} (run `pipeline run` and commit the lock)",), d)
        return StageState(d.stage, Status.UP_TO_DATE, (), d)
    built = d.previous or cache.records.latest(recipe.name, d.stage) or cache.records.latest(recipe.base_name, d.stage)
    return StageState(d.stage, Status.STALE if built else Status.NOT_BUILT, d.reasons, d)


def states(
    recipe: Recipe, cache: Cache, decisions: Iterable[Decision], lock: dict[str, Any] | None = None
) -> list[StageState]:
    return [state(recipe, cache, d, lock) for d in decisions]
