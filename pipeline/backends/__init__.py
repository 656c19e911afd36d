"""Where a stage's task runs. The executor's loop submits tasks and polls for their outcomes; whether a
pool of worker processes, this very process (backends/local.py) or a Ray cluster (backends/ray/) runs them
is a backend's business.

A backend never publishes anything: it hands back the worker's `Outcome`, and the executor decides
what enters the cache.
"""

from __future__ import annotations

from typing import Callable, Protocol

from pipeline.backends.worker import Outcome, Task

# (stage, done, total, description): how a backend passes on a running stage's progress.
ProgressSink = Callable[[str, float, "float | None", str], None]


class Backend(Protocol):
    def submit(self, task: Task) -> None:
        """Start `task`; its outcome comes back from a later `poll`."""
        ...

    def poll(self, timeout: float | None) -> list[tuple[str, Outcome]]:
        """Wait up to `timeout` seconds (None: until something happens) and return the stages that ended."""
        ...

    def cancel(self, stage: str) -> None:
        """Stop a submitted stage now (Ctrl-C); no outcome follows."""
        ...

    def close(self) -> None:
        """Release workers; called once, after the last poll."""
        ...


def backend_for(in_process: bool, progress: ProgressSink) -> Backend:
    """This machine's backend: a pool of worker processes, or this very process (`--in-process`)."""
    from pipeline.backends.local import InProcess, ProcessPool

    return InProcess(progress) if in_process else ProcessPool(progress)
