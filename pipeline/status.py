"""Every status a stage can have, in one table: plan, executor, worker, reporters and the CLI read it.

Each member's value is the word `--json` prints (CI scripts read them), so a
member is renamed freely but its value never changes; a new state gets a new word.
`str` mixed in (not `StrEnum`, which needs Python 3.11) keeps comparisons with
plain strings, JSON encoding and f-strings giving the bare word.
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable

from pipeline.errors import EXIT_FAILED, EXIT_GATE, EXIT_OK, EXIT_UNAVAILABLE


class Status(str, Enum):
    # `plan` / `status` decisions, before anything runs
    RUN = "run"  # will run (`plan --json`)
    WAITS = "waits"  # its key needs a parent that must run first (early cutoff)
    UP_TO_DATE = "up to date"  # `status`, `summary`: its current key's result is in the cache (run/freshness.py)
    STALE = "stale"  # `status`, `summary`: anything else that could run
    NOT_BUILT = "not built"  # `status`, `summary`: stale, and never built under any key
    # a run, per stage (`run --json`, run.json)
    PENDING = "pending"
    RUNNING = "running"
    CACHED = "cached"  # also a plan decision
    PULLED = "pulled"  # served by the remote cache (downloaded or not); also a plan decision
    RAN = "ran"
    FAILED = "failed"  # ran and raised (or its worker died)
    GATE_FAILED = "gate failed"  # ran, and a validation gate failed
    UNAVAILABLE = "unavailable"  # could not start here (no GPU, missing extra); also a plan decision
    SKIPPED = "skipped"  # an upstream stage failed or was unavailable
    NOT_RUN = "not run"  # the run stopped after a failure before its turn
    INTERRUPTED = "interrupted"  # Ctrl-C while it ran

    __str__ = str.__str__  # f"{s}" and str(s) give the word, on every Python version

    @property
    def failed(self) -> bool:
        """Ran and did not succeed: the run's exit code says which."""
        return self in (Status.FAILED, Status.GATE_FAILED)

    @property
    def built(self) -> bool:
        """Its outputs exist (a child may use them)."""
        return self in (Status.CACHED, Status.PULLED, Status.RAN)


def run_exit_code(statuses: Iterable[Status], skip_unavailable: bool = False) -> int:
    """A run's exit code from how its stages ended: a failure, then a failed gate, then a stage that cannot
    run on this machine (unless skipped on purpose)."""
    ended = set(statuses)
    if Status.FAILED in ended:
        return EXIT_FAILED
    if Status.GATE_FAILED in ended:
        return EXIT_GATE
    if Status.UNAVAILABLE in ended and not skip_unavailable:
        return EXIT_UNAVAILABLE
    return EXIT_OK
