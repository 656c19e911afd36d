"""The toy project for engine tests: recipes loaded, planned and run in this process (no CLI).

The toy stage kinds (tests/e2e/toy/toystages.py) append their stage name to
$TOY_RUNLOG whenever run() is called, so a test can prove a stage did not run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.cache import Cache
from pipeline.recipe.graph import stage_graph
from pipeline.recipe.load import Recipe, load_recipe
from pipeline.run.executor import Executor, RunOptions, RunResult
from pipeline.run.plan import Decision, Planner

TOY = Path(__file__).resolve().parent / "e2e" / "toy"
HEAD = "name: toy\nplugins: [toystages]\n"


def word(status: Any) -> str:
    """A status as its public `--json` word, whether the module exports strings or an enum."""
    return str(getattr(status, "value", status))


@dataclass
class Collecting:
    """A reporter that keeps every event, for tests to read."""

    events: list[Any] = field(default_factory=list)

    def handle(self, event: Any) -> None:
        self.events.append(event)

    def about(self, stage: str) -> list[Any]:
        return [e for e in self.events if getattr(e, "stage", None) == stage]


@dataclass
class Toy:
    root: Path
    cache: Cache
    runlog: Path

    def recipe(self, text: str | None = None, name: str = "toy.yaml", overrides: tuple[str, ...] = ()) -> Recipe:
        """Write `text` (if given) to `name` in the project and load it."""
        path = self.root / name
        if text is not None:
            path.write_text(text)
        return load_recipe(path, list(overrides))

    def plan(self, recipe: Recipe, targets: tuple[str, ...] = (), **force: Any) -> dict[str, Decision]:
        graph = stage_graph(recipe, targets, self.cache.graphs)
        return {d.stage: d for d in Planner(recipe, self.cache, **force).plan(list(graph.order))}

    def run(self, recipe: Recipe, **options: Any) -> tuple[RunResult, Collecting]:
        """Run in-process, as `pipeline run --in-process` wires it (commands.cmd_run)."""
        opts = RunOptions(in_process=True, **options)
        reporter = Collecting()
        result = Executor(
            recipe, stage_graph(recipe, opts.targets, self.cache.graphs), self.cache, opts, reporter
        ).run()
        return result, reporter

    def statuses(self, result: RunResult) -> dict[str, str]:
        return {stage: word(s) for stage, s in result.status.items()}

    def runs(self) -> list[str]:
        """Stage names whose run() was called, in order."""
        return self.runlog.read_text().split() if self.runlog.exists() else []


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Toy:
    """A copy of tests/e2e/toy with its own cache; $TOY_RUNLOG counts the stages whose run() was called."""
    root = tmp_path / "proj"
    shutil.copytree(TOY, root, ignore=shutil.ignore_patterns("__pycache__", "*.lock"))
    runlog = tmp_path / "runlog"
    monkeypatch.setenv("TOY_RUNLOG", str(runlog))
    monkeypatch.delenv("PIPELINE_SIDE_CACHE", raising=False)  # the executor sets it: undone after the test
    monkeypatch.chdir(root)
    return Toy(root=root, cache=Cache(tmp_path / "cache"), runlog=runlog)
