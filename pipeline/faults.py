"""Named fault points for crash tests: PIPELINE_FAULT=<point>[:<stage>] SIGKILLs the process there.

Deterministic, unlike sleep-then-kill: the test names exactly where the crash happens.
Points: `run` (in the worker, after the stage wrote its outputs, before it reports back),
`publish` (in the engine, after objects are stored, before the record is written),
`locked` (in the engine, holding the key lock, before the stage is dispatched),
`upload` (write-through to a remote, after a stage's objects are uploaded, before its record),
`trial` (in the worker, right after a stage's first trial is stored in the cache: `ctx.trials`).
"""

from __future__ import annotations

import os
import signal


def fault(point: str, stage: str) -> None:
    wanted = os.environ.get("PIPELINE_FAULT")
    if wanted and wanted in (point, f"{point}:{stage}"):
        os.kill(os.getpid(), signal.SIGKILL)
