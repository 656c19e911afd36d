"""`pipeline push`: the selected stages' current local results uploaded, unsigned (only `run` signs, and
only what it built); what was pulled from a remote, or is not built here, is not pushed."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.ops.project import Project
from pipeline.remote.store import Remote
from pipeline.remote.sync import push as push_record
from pipeline.status import Status


@dataclass(frozen=True)
class PushResult:
    pushed: dict[str, int]  # stage -> bytes uploaded (0: the remote held it already)
    skipped: tuple[str, ...]  # why each other selected stage was not pushed


def push(project: Project, remote: Remote) -> PushResult:
    """Raises RemoteUnavailable when the remote cannot be used."""
    pushed: dict[str, int] = {}
    skipped = []
    for d in project.plan():
        if d.status != Status.CACHED or d.record is None:
            skipped.append(f"{d.stage} is not built here ({d.status})")
        elif d.record.provenance.get("origin") == "pulled":
            skipped.append(f"{d.stage} was pulled from {d.record.provenance.get('remote')}")
        else:
            pushed[d.stage] = push_record(remote, d.record, project.cache.objects, sign=False)
    return PushResult(pushed, tuple(skipped))
