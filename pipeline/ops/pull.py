"""`pipeline pull` (and `show`, `summary`): the selected stages' current results brought from the remote into
the local cache, through the one owner of results that live elsewhere (pipeline/remote/results.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipeline.cache.records import StageRecord
from pipeline.cache.views import update_view
from pipeline.ops.project import Project
from pipeline.remote.results import RemoteResults, Undeliverable
from pipeline.remote.store import Remote
from pipeline.run.plan import Decision
from pipeline.status import Status


@dataclass(frozen=True)
class PullResult:
    local: dict[str, StageRecord]  # every selected stage whose current result is now here (pulled or cached)
    pulled: dict[str, int]  # stage -> bytes downloaded
    missing: tuple[str, ...] = field(default=())  # "stage (why)", for those the remote could not serve

    @property
    def downloaded(self) -> int:
        return sum(self.pulled.values())


def pull(project: Project, remote: Remote) -> PullResult:
    """Pull what the remote serves of the selected stages; each pulled stage gets its views."""
    recipe, cache = project.recipe, project.cache
    results = RemoteResults(remote, cache, recipe.name)
    local: dict[str, StageRecord] = {}
    pulled: dict[str, int] = {}
    missing = []
    for d in project.plan(remote):
        if d.status == Status.CACHED and d.record is not None:
            local[d.stage] = d.record
            continue
        if d.status != Status.PULLED or d.remote is None:
            missing.append(f"{d.stage} ({d.status})")
            continue
        try:
            taken = results.take(d.stage, d.remote)
        except Undeliverable as exc:
            missing.append(f"{d.stage} ({'corrupted on the remote' if exc.corrupted else 'remote unreachable'})")
            continue
        update_view(cache, recipe.name, d.stage, taken.record)
        local[d.stage] = taken.record
        pulled[d.stage] = taken.downloaded
    cache.memo.flush()
    return PullResult(local, pulled, tuple(missing))


def with_reports(project: Project, remote: Remote, decisions: list[Decision]) -> list[Decision]:
    """Decisions where each stage the remote serves whose outputs include Markdown reports has them brought
    here (as `cached`), so `pipeline summary` can show them; one the remote cannot deliver stays as it was."""
    results = RemoteResults(remote, project.cache, project.recipe.name)
    out = []
    for d in decisions:
        reports = any(o.path.endswith(".md") for o in project.recipe.stages[d.stage].kind.outputs.values())
        if d.status == Status.PULLED and d.remote is not None and reports:
            try:
                record = results.take(d.stage, d.remote).record
                d = dataclasses.replace(d, status=Status.CACHED, record=record, remote=None)
            except Undeliverable:
                pass
        out.append(d)
    return out
