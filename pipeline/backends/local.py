"""This machine's backends: a pool of persistent worker processes (the default), or this very process."""

from __future__ import annotations

import time
from typing import Any

from pipeline.backends import ProgressSink
from pipeline.backends.worker import Outcome, Task
from pipeline.status import Status


class InProcess:
    """Runs each task as it is submitted, in this process (`--in-process`: debuggers and profilers see
    the stage's code). A crash in native code takes the run with it; that is the trade."""

    def __init__(self, progress: ProgressSink):
        self._progress = progress
        self._ended: list[tuple[str, Outcome]] = []

    def submit(self, task: Task) -> None:
        from pipeline.backends.worker import execute

        def progress(done: float, total: float | None = None, desc: str = "") -> None:
            self._progress(task.stage, done, total, desc)

        self._ended.append((task.stage, execute(task, progress, capture=False)))

    def poll(self, timeout: float | None) -> list[tuple[str, Outcome]]:
        ended, self._ended = self._ended, []
        return ended

    def cancel(self, stage: str) -> None:
        return None  # a stage running here has already ended (or is what was interrupted)

    def close(self) -> None:
        return None


class _Worker:
    """One spawned worker process and the pipe it takes tasks and sends progress and outcomes on."""

    def __init__(self, mp: Any):
        from pipeline.backends.worker import worker_main

        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(timeout=5)
            if self.proc.is_alive():
                self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class ProcessPool:
    """Persistent spawned workers, one task at a time each, reused across stages (imports stay warm); a kind
    that asks for `own_process` gets a new worker, stopped when it ends. A worker that dies (a crash or OOM in
    native code) fails its stage, not the run."""

    def __init__(self, progress: ProgressSink):
        self._progress = progress
        self._mp: Any = None  # multiprocessing's spawn context, made when a first stage must run
        self._idle: list[_Worker] = []
        # stage -> (worker, when it was submitted, whether it is stopped when the stage ends: `Task.own_process`)
        self._busy: dict[str, tuple[_Worker, float, bool]] = {}

    def submit(self, task: Task) -> None:
        if self._mp is None:
            import multiprocessing

            self._mp = multiprocessing.get_context("spawn")
        worker = self._idle.pop() if self._idle and not task.own_process else _Worker(self._mp)
        self._busy[task.stage] = (worker, time.perf_counter(), task.own_process)
        worker.conn.send(task)

    def poll(self, timeout: float | None) -> list[tuple[str, Outcome]]:
        import multiprocessing.connection

        if not self._busy:
            return []
        by_handle: dict[Any, str] = {}
        for stage, (worker, _, _) in self._busy.items():
            by_handle[worker.conn] = by_handle[worker.proc.sentinel] = stage
        ended = []
        for ready in multiprocessing.connection.wait(list(by_handle), timeout):
            stage = by_handle[ready]
            if stage not in self._busy:
                continue  # its pipe and its sentinel were both ready
            outcome = self._drain(stage)
            if outcome is not None:
                del self._busy[stage]
                ended.append((stage, outcome))
        return ended

    def _drain(self, stage: str) -> Outcome | None:
        worker, started, retire = self._busy[stage]
        try:
            while worker.conn.poll():
                msg = worker.conn.recv()
                if msg[0] == "progress":
                    self._progress(stage, *msg[1:])
                else:
                    if retire:
                        worker.stop()
                    else:
                        self._idle.append(worker)
                    return msg[1]
        except (EOFError, OSError):
            worker.proc.join(timeout=10)  # its end of the pipe closed: it is exiting (a core dump takes a while)
        if worker.proc.is_alive():
            return None
        worker.stop(kill=True)
        code = worker.proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return Outcome(Status.FAILED, {}, f"worker process died ({how})", time.perf_counter() - started)

    def cancel(self, stage: str) -> None:
        busy = self._busy.pop(stage, None)
        if busy is not None:
            busy[0].stop(kill=True)

    def close(self) -> None:
        for stage in list(self._busy):
            self.cancel(stage)
        for worker in self._idle:
            worker.stop()
        self._idle.clear()
