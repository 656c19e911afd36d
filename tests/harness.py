"""The one way tests run things: a stage kind called directly (`run_stage`), and a project copied to a temp folder
with its own cache (`Project`: the toy project in tests/toy, or recipes from recipes/), then run through the real
CLI in a subprocess or loaded, planned and run in this process. conftest.py's fixtures make the projects.

The toy stage kinds (tests/toy/toystages.py) append their stage name to $TOY_RUNLOG whenever run() is
called, so a test can prove a stage did not run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pipeline.cache import Cache
from pipeline.recipe.graph import stage_graph
from pipeline.recipe.load import Recipe, load_recipe
from pipeline.run.executor import Executor, RunOptions, RunResult
from pipeline.run.plan import Decision, Planner
from pipeline.schema import ModelSpec
from pipeline.stage import Stage, StageContext

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "toy"
RECIPES = REPO / "recipes"
HEAD = "name: toy\nplugins: [toystages]\n"  # how a toy recipe starts

E = TypeVar("E")
Ran = tuple[subprocess.CompletedProcess, dict]  # a `pipeline run --json`: the process, and the run record it printed


# -- a stage kind, called directly -------------------------------------------------------------------------------
def run_stage(
    kind: type[Stage],
    outdir: Path,
    params: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    model: ModelSpec | dict | None = None,
    recipe_dir: Path | None = None,
    side_cache: Path | None = None,
) -> dict[str, Any]:
    """Run one stage kind in-process, as the worker would, and check its declared outputs exist. The side
    cache is `side/` beside `outdir` unless given (stages run one after another share it, as in a run)."""
    outdir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, dict):
        model = ModelSpec.model_validate(model)
    ctx = StageContext(
        stage=kind.kind.replace(".", "_"),
        params=kind.Params.model_validate(params or {}),
        inputs=dict(inputs or {}),
        outdir=outdir,
        recipe_dir=recipe_dir or outdir,
        model=model,
        outputs=dict(kind.outputs),
        side_cache=side_cache or outdir.parent / "side",
    )
    summary = kind().run(ctx) or {}
    for name, spec in kind.outputs.items():
        produced = outdir / spec.path
        assert produced.is_dir() if spec.is_dir else produced.is_file(), f"{kind.kind} did not write output {name}"
    return summary


def cpu_default_ov_precision() -> str:
    """What OpenVINO's CPU plugin runs a float model in when nobody pins it: bf16 on a CPU with AVX512_BF16 or
    AMX, else f32 (a server that cannot pin the precision, like Triton's OpenVINO backend, runs that)."""
    from stages.runtimes.cpu import cpu_identity

    flags = cpu_identity()["cpu_flags"].split()
    return "bf16" if "avx512_bf16" in flags or "amx_bf16" in flags else "f32"


def cpu_has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512_VNNI, AVX_VNNI or AMX). Without them
    OpenVINO's int8 kernels (AVX2's u8 x s8 multiply-add) saturate, and an INT8 engine that is accurate on
    a VNNI machine loses accuracy here: its gates fail it, as they should."""
    from stages.runtimes.cpu import cpu_identity

    flags = cpu_identity()["cpu_flags"].split()
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


needs_vnni = pytest.mark.skipif(
    not cpu_has_vnni(), reason="INT8 accuracy figures assume a CPU with VNNI (AVX512_VNNI, AVX_VNNI or AMX)"
)


# -- a project ---------------------------------------------------------------------------------------------------
@dataclass
class Collecting:
    """A reporter that keeps every event, for tests to read."""

    events: list[Any] = field(default_factory=list)

    def handle(self, event: Any) -> None:
        self.events.append(event)

    def about(self, stage: str) -> list[Any]:
        return [e for e in self.events if getattr(e, "stage", None) == stage]

    def one(self, kind: type[E], stage: str) -> E:
        """The one event of type `kind` (StageFinished, StageErrored, ...) about `stage`."""
        (event,) = [e for e in self.about(stage) if isinstance(e, kind)]
        return event


@dataclass
class Project:
    """A project's files in `root`, its own cache folder, and the toy kinds' run log."""

    root: Path
    cache: Path
    runlog: Path

    @classmethod
    def at(cls, tmp: Path) -> Project:
        """An empty project in tmp/proj, its cache tmp/cache: the test writes its files."""
        (tmp / "proj").mkdir(parents=True, exist_ok=True)
        return cls(root=tmp / "proj", cache=tmp / "cache", runlog=tmp / "runlog")

    @classmethod
    def copy(cls, tmp: Path, *names: str, source: Path = TOY) -> Project:
        """A project in tmp/proj made from `source`: the files `names` (a recipe and the modules it loads, as
        `copy(tmp, "digits_int8.yaml", "digits_plugin.py", source=RECIPES)`), or all of it."""
        project = cls.at(tmp)
        if names:
            for name in names:
                shutil.copy(source / name, project.root / name)
        else:
            ignore = shutil.ignore_patterns("__pycache__", "*.lock")
            shutil.copytree(source, project.root, ignore=ignore, dirs_exist_ok=True)
        return project

    # -- its files
    @property
    def recipe(self) -> Path:
        return self.root / "toy.yaml"

    def write_recipe(self, text: str, name: str = "toy.yaml") -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    def lock(self, name: str = "toy.lock") -> dict:
        import yaml

        return yaml.safe_load((self.root / name).read_text())["stages"]

    def runs(self) -> list[str]:
        """Stage names whose run() was called, in order, since the project was made."""
        return [line for line in self.runs_raw() if " " not in line]

    def runs_raw(self) -> list[str]:
        """Every line of the run log: stage names, and what a kind logs beside them (`search:trial 2`)."""
        return self.runlog.read_text().splitlines() if self.runlog.exists() else []

    # -- through the CLI, in a subprocess
    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The CLI's environment: this one, the project's cache and run log, a wide console, then `extra`."""
        own = {"TOY_RUNLOG": str(self.runlog), "PIPELINE_CACHE": str(self.cache), "COLUMNS": "200"}
        return {**os.environ, **own, **(extra or {})}

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """`pipeline ARGS` in the project's folder, with its cache."""
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli.main", *args],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None, ctrl_c: bool = False) -> subprocess.Popen:
        """Start the CLI without waiting; `ctrl_c=True` gives it default SIGINT handling (see `_default_sigint`)."""
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", *args],
            cwd=self.root,
            env=self.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint if ctrl_c else None,
        )  # noqa: PLW1509 - no threads here

    def run_json(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Ran:
        """`pipeline run ARGS --json`: the process, and the run record it printed ({} if none)."""
        proc = self.cli("run", *args, "--json", env=env, timeout=timeout)
        return proc, json.loads(proc.stdout) if proc.stdout.strip() else {}

    # -- in this process (the `toy` fixture sets the folder and the environment these need)
    @cached_property
    def store(self) -> Cache:
        """The project's cache, opened in this process."""
        return Cache(self.cache)

    def load(self, text: str | None = None, name: str = "toy.yaml", overrides: tuple[str, ...] = ()) -> Recipe:
        """Write `text` (if given) to `name` in the project and load it."""
        path = self.root / name
        if text is not None:
            path.write_text(text)
        return load_recipe(path, list(overrides))

    def plan(self, recipe: Recipe, targets: tuple[str, ...] = (), **force: Any) -> dict[str, Decision]:
        graph = stage_graph(recipe, targets, self.store.graphs)
        return {d.stage: d for d in Planner(recipe, self.store, **force).plan(list(graph.order))}

    def run(self, recipe: Recipe, **options: Any) -> tuple[RunResult, Collecting]:
        """Run in-process, as `pipeline run --in-process` wires it."""
        opts = RunOptions(in_process=True, **options)
        reporter = Collecting()
        graph = stage_graph(recipe, opts.targets, self.store.graphs)
        return Executor(recipe, graph, self.store, opts, reporter).run(), reporter

    @staticmethod
    def statuses(result: RunResult) -> dict[str, str]:
        return {stage: str(status) for stage, status in result.status.items()}


def _default_sigint() -> None:
    """In the child before exec: SIGINT as a terminal's Ctrl-C would find it.

    A suite started with SIGINT ignored (a background job of a non-interactive
    shell, some CI runners) passes SIG_IGN on to every child, and Python then
    installs no KeyboardInterrupt handler. The CLI keeps that immunity on
    purpose (as Unix tools do), so the test, not the CLI, resets it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- reading a run record ----------------------------------------------------------------------------------------
def rows(record: dict) -> dict[str, dict]:
    """A run record's stages by name."""
    return {s["stage"]: s for s in record["stages"]}


def report(row: dict) -> dict:
    """A validate stage's report.json, from its row of the run record."""
    return json.loads(Path(row["outputs"]["report"]).read_text())


def quick_timing(*stages: str) -> list[str]:
    """--set overrides that keep `validate` stages' timing short (the figures are what the tests read)."""
    return [
        arg
        for stage in stages
        for arg in (
            "--set",
            f"stages.{stage}.with.min_seconds=0.2",
            "--set",
            f"stages.{stage}.with.throughput_batches=[1]",
        )
    ]
