"""Runs stages: in a persistent worker process (default) or in the caller (debugging).

A task names its inputs by digest and the store that holds them; the worker
fetches them into its workspace, runs the kind, checks and stores the declared
outputs and returns their digests. Where it runs is thus the backend's choice
(pipeline/backends/__init__.py). The engine writes the record; a worker never does.

A worker imports a kind's libraries once and keeps them for the rest of the
run (like Bazel's persistent workers). Each task's stdout, stderr (including
native libraries' output) and warnings go to the stage's log file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pipeline.cache.hashing import jsonable
from pipeline.cache.records import OutputRecord
from pipeline.errors import GateFailed, one_line
from pipeline.faults import fault
from pipeline.keys import discovered
from pipeline.stage import DatasetInput, StageContext, Trials, UncachedTrials
from pipeline.status import Status

if TYPE_CHECKING:
    from pipeline.cache.objects import Objects


@dataclass(frozen=True)
class Placement:
    """What a task needs of a machine, for a backend that places it (a cluster); the local backends run
    every task here."""

    cpus: int = 1
    exclusive: bool = False  # times things: nothing else runs beside it
    accelerator: str | None = None  # a hardware target's accelerator type ("H100"), placed by node label
    threads: str | None = None  # the driver's OMP_NUM_THREADS (unset: None), so numerics match a local run


@dataclass(frozen=True)
class Expected:
    """What the key was computed with: a machine whose code or toolchain for the kind differs must not
    build under that key (a cluster node with another image)."""

    code: dict[str, Any]
    toolchain: dict[str, str]


@dataclass(frozen=True)
class TrialSpec:
    """Where a stage's trials are kept (`pipeline.cache.trials`): their base key, and the local cache root
    that holds them (None: this machine's own directory, on a cluster node)."""

    base: str
    root: str | None = None
    fresh: bool = False  # a forced stage: every trial computed again


@dataclass(frozen=True)
class Task:
    """A stage run as plain, picklable data: all a worker needs, here or on another machine."""

    stage: str
    kind_module: str
    kind_class: str
    params: dict[str, Any]
    inputs: dict[str, Any]  # an artifact: OutputRecord (by digest); a dataset: DatasetInput; a file: its path
    outputs: dict[str, tuple[str, bool]]  # declared outputs: name -> (path inside out/, is a directory)
    store: str  # where the inputs are and the outputs go: a local cache root, or a remote store's URL
    workspace: str  # a fresh directory: inputs are fetched under in/, the kind writes under out/
    recipe_dir: str
    model: dict[str, Any] | None
    log: str
    side_cache: str | None = None  # tuning aids that outlive a run, outside every key (TensorRT's timing cache)
    placement: Placement = Placement()
    bundle: str | None = None  # the recipe's folder as a directory object on `store`, for another machine
    expect: Expected | None = None  # checked before the kind runs, where the machine may differ
    trials: TrialSpec | None = None  # None: trials are computed every time (a stage outside a recipe's run)
    own_process: bool = False  # the kind's `own_process`: a worker of its own, retired afterwards

    @property
    def outdir(self) -> Path:
        return Path(self.workspace) / "out"


@dataclass(frozen=True)
class Outcome:
    status: Status  # RAN, FAILED or GATE_FAILED
    summary: dict[str, Any]
    error: str = ""
    seconds: float = 0.0
    outputs: dict[str, OutputRecord] = field(default_factory=dict)  # stored, when RAN
    # Files the kind's code opened by path, `{label: digest}` (pipeline/keys/discovered.py), when RAN.
    discovered: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # every warning the stage raised, one line each, in order
    node: str = ""  # the machine that ran it, when not this one
    log: str | None = None  # the stage's log, brought back from that machine
    trials: tuple[dict[str, Any], ...] = ()  # each trial the stage asked for (`Trial.row`), in order


def execute(task: Task, progress: Callable[[float, float | None, str], None], capture: bool = True) -> Outcome:
    """Import the kind, build its context and call run(); never raises for a stage's own error."""
    import importlib

    from pipeline.schema import ModelSpec

    start = time.perf_counter()
    cwd = os.getcwd()
    ctx: StageContext[Any] | None = None
    with _captured(Path(task.log), capture):
        try:
            if task.recipe_dir not in sys.path:
                sys.path.insert(0, task.recipe_dir)
            kind = getattr(importlib.import_module(task.kind_module), task.kind_class)
            params = kind.Params.model_validate(task.params)
            if task.expect is not None:
                problem = unlike_the_key(kind, params, task.expect)
                if problem is not None:
                    return _failed(Status.FAILED, f"this machine cannot build it: {problem}", start, None)
            store = open_store(task.store)
            ctx = StageContext(
                stage=task.stage,
                params=params,
                inputs=_fetch_inputs(task, store),
                outdir=task.outdir,
                recipe_dir=Path(task.recipe_dir),
                model=ModelSpec.model_validate(task.model) if task.model is not None else None,
                progress=progress,
                outputs=dict(kind.outputs),
                side_cache=Path(task.side_cache) if task.side_cache else None,
                trials=_trials_for(task),
            )
            os.chdir(task.outdir)
            print(f"[pipeline] stage {task.stage} ({kind.kind}) started", flush=True)
            with discovered.recording() as reads:
                summary = kind().run(ctx) or {}
            fault("run", task.stage)
            found = discovered.entries(reads, Path(task.recipe_dir), _declared_paths(task))
            outputs = _store_outputs(task, store)
            return Outcome(
                Status.RAN,
                jsonable(summary),
                seconds=time.perf_counter() - start,
                outputs=outputs,
                discovered=found,
                warnings=tuple(ctx.warnings),
                trials=_trial_rows(ctx),
            )
        except GateFailed as exc:
            _print_traceback(Path(task.log), capture)
            failed = _failed(Status.GATE_FAILED, one_line(str(exc)), start, ctx)
            return dataclasses.replace(failed, outputs=_store_reports(task, open_store(task.store)))
        except MissingOutput as exc:
            return _failed(Status.FAILED, str(exc), start, ctx)
        except Exception as exc:  # noqa: BLE001 - a stage's failure is data, not a crash of the engine
            _print_traceback(Path(task.log), capture)
            return _failed(Status.FAILED, one_line(exc), start, ctx)
        finally:
            os.chdir(cwd)
            sys.stdout.flush()
            sys.stderr.flush()


def _store_reports(task: Task, store: Objects) -> dict[str, OutputRecord]:
    """The declared files a stage wrote before a gate failed it (its reports), stored so that `plan`,
    `status` and `pipeline summary` can show them; best effort, a failure is reported either way."""
    stored = {}
    try:
        for name, (path, is_dir) in task.outputs.items():
            p = task.outdir / path
            if not is_dir and p.is_file():
                digest = store.put(p, False)
                stored[name] = OutputRecord(digest, False, store.size(digest, False), path)
                p.parent.mkdir(parents=True, exist_ok=True)
                store.fetch(digest, False, p)  # kept for inspection beside the log, as before
        store.flush()
    except Exception as exc:  # noqa: BLE001 - the failure being reported matters more
        print(f"[pipeline] reports of the failed stage not stored: {type(exc).__name__}: {exc}", flush=True)
    return stored


def _failed(status: Status, error: str, start: float, ctx: StageContext[Any] | None) -> Outcome:
    """A failure, with the warnings said before it (often its cause: calibrated on 4 samples)."""
    said = tuple(ctx.warnings) if ctx is not None else ()
    return Outcome(status, {}, error, time.perf_counter() - start, warnings=said, trials=_trial_rows(ctx))


def _trial_rows(ctx: StageContext[Any] | None) -> tuple[dict[str, Any], ...]:
    return tuple(t.row() for t in ctx.trials.done) if ctx is not None else ()


def _trials_for(task: Task) -> Trials:
    """The stage's `ctx.trials`: kept in the local cache (a cluster node's own, when the task's store is
    remote), or computed every time when the task names no trial base."""
    scratch = Path(task.workspace) / "trials"
    if task.trials is None:
        return UncachedTrials(scratch)
    from pipeline.cache.objects import ObjectStore
    from pipeline.cache.trials import TrialCache

    root = Path(task.trials.root) if task.trials.root else node_trials_dir()
    store = open_store(str(root))
    assert isinstance(store, ObjectStore)  # a local root opens the local store
    reads = _TrialReads(task, store)
    return TrialCache(store, root, task.trials.base, task.stage, scratch, reads, task.trials.fresh)


def node_trials_dir() -> Path:
    """Where a cluster node keeps trials: a folder of this user's alone (0700), since trial records are
    trusted as this user's own results."""
    import tempfile

    root = Path(tempfile.gettempdir()) / f"pipeline-trials-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{root} is not this user's alone (owner {info.st_uid}, mode {info.st_mode:o})")
    return root


class _TrialReads:
    """A trial's discovered inputs: what its code opened by path while it was made, checked before it is
    served again (pipeline/keys/discovered.py)."""

    def __init__(self, task: Task, store: Any):
        self.task, self.memo = task, getattr(store, "memo", None)

    def watch(self, produce: Any, directory: Path) -> tuple[Any, dict[str, str]]:
        with discovered.recording() as reads:
            made = produce(directory)
        leave_out = (*_declared_paths(self.task), directory)
        return made, discovered.entries(reads, Path(self.task.recipe_dir), leave_out)

    def changes(self, reads: Any) -> list[str]:
        from pipeline.cache.hashing import DigestMemo

        return discovered.changes(dict(reads), Path(self.task.recipe_dir), self.memo or DigestMemo(None))


def _declared_paths(task: Task) -> tuple[Path, ...]:
    """What the key holds already, left out of the discovered inputs: the workspace (inputs and outputs),
    a local store, and the files and folders named as inputs or in a dataset's spec."""
    paths = [Path(task.workspace), Path(task.log)]
    if "://" not in task.store:
        paths.append(Path(task.store))
    for value in task.inputs.values():
        if isinstance(value, str):
            paths.append(Path(task.recipe_dir, value))
        elif isinstance(value, DatasetInput):
            named = [v for v in value.spec.values() if isinstance(v, str) and v]
            paths += [p for p in (value.base_dir / v for v in named) if p.exists()]
    return tuple(paths)


class MissingOutput(Exception):
    """The kind returned without writing an output it declares."""


def open_store(where: str) -> Objects:
    """The store a task names, opened once per worker: a local cache root (its digest memo is what makes
    reruns cheap) or, on another machine, the remote store's URL."""
    if where not in _STORES:
        if "://" in where:
            from pipeline.remote.objects import RemoteObjects
            from pipeline.remote.store import Remote

            _STORES[where] = RemoteObjects(Remote(where))
        else:
            from pipeline.cache import Cache

            _STORES[where] = Cache(Path(where)).objects
    return _STORES[where]


_STORES: dict[str, Objects] = {}


def _fetch_inputs(task: Task, store: Objects) -> dict[str, Any]:
    """Artifacts named by digest appear under in/<input>/<their file name>; the rest pass as they are."""
    inputs: dict[str, Any] = {}
    for name, value in task.inputs.items():
        if isinstance(value, OutputRecord):
            dest = Path(task.workspace) / "in" / name / value.path
            store.fetch(value.digest, value.is_dir, dest)
            inputs[name] = dest
        else:
            inputs[name] = value
    return inputs


def _store_outputs(task: Task, store: Objects) -> dict[str, OutputRecord]:
    """Check every declared output was written, then move them into the store (all or none recorded)."""
    for name, (path, is_dir) in task.outputs.items():
        p = task.outdir / path
        if not (p.is_dir() if is_dir else p.is_file()):
            raise MissingOutput(f"stage {task.stage} did not write its output {name!r} ({path})")
    stored = {}
    for name, (path, is_dir) in task.outputs.items():
        digest = store.put(task.outdir / path, is_dir)
        stored[name] = OutputRecord(digest, is_dir, store.size(digest, is_dir), path)
    store.flush()  # locally: the next plan verifies these objects by stamp instead of rehashing them
    return stored


def _print_traceback(log: Path, captured: bool) -> None:
    """To stderr, which is the log when captured; in-process (debugging) also into the log, so the
    path the failure line names always holds the traceback."""
    import traceback

    text = traceback.format_exc()
    sys.stderr.write(text)
    if not captured:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write(text)


@contextlib.contextmanager
def _captured(log: Path, capture: bool) -> Iterator[None]:
    """Point fds 1 and 2 (so native code too), Python warnings and logging at the log file."""
    import logging
    import warnings

    if not capture:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab", buffering=0) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        handler = logging.StreamHandler(sys.stderr)
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            logging.getLogger().removeHandler(handler)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def worker_main(conn: Any) -> None:
    """Entry point of a worker process: run tasks from `conn` until it closes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine handles Ctrl-C and stops us

    progress = throttled(lambda done, total, desc: conn.send(("progress", done, total, desc)), every=0.1)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(("done", execute(task, progress)))


def throttled(send: Callable[[float, float | None, str], None], every: float) -> Callable[..., None]:
    """A stage's progress callback that passes on at most one report every `every` seconds (and always the
    last step): a kind may report per batch, and a pipe or a cluster should not carry each one."""
    last = [0.0]

    def progress(done: float, total: float | None = None, desc: str = "") -> None:
        now = time.monotonic()
        if now - last[0] >= every or (total is not None and done >= total):
            last[0] = now
            send(done, total, desc)

    return progress


def unlike_the_key(kind: Any, params: Any, expect: Expected) -> str | None:
    """Why this machine must not build under the key: other code for the kind, another toolchain, or a
    requirement it does not meet (a result is never built on one GPU for another); None when it may."""
    from pipeline.cache.hashing import DigestMemo
    from pipeline.keys.compute import kind_code, toolchain_of

    here = kind_code(kind, DigestMemo(None))
    if here != expect.code:
        return f"its code for kind {kind.kind} differs from the driver's ({_first_difference(expect.code, here)})"
    toolchain = toolchain_of(kind(), params)
    if toolchain != expect.toolchain:
        diff = sorted(k for k in set(toolchain) | set(expect.toolchain) if toolchain.get(k) != expect.toolchain.get(k))
        shown = ", ".join(f"{k} {expect.toolchain.get(k)} -> {toolchain.get(k)}" for k in diff[:3])
        return f"its toolchain differs from the key's ({shown})"
    return unmet_here(kind(), params)


def unmet_here(stage: Any, params: Any) -> str | None:
    """Why this machine cannot run the stage: what the kind needs (`Stage.unmet`), then, for a declared
    hardware target, whether this machine is of it."""
    unmet = stage.unmet(params)
    target = stage.target(params)
    return unmet if unmet is not None or target is None else target.mismatch()


def _first_difference(driver: dict[str, Any], here: dict[str, Any]) -> str:
    """The first module or distribution whose digest or version differs between two code closures."""
    for part in sorted(set(driver) | set(here)):
        a, b = driver.get(part), here.get(part)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            name = next(n for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n))
            return f"{part} {name}: {str(a.get(name, 'absent'))[:16]} -> {str(b.get(name, 'absent'))[:16]}"
        return f"{part} differs"
    return "no difference"
