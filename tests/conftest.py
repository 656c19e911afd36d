"""Fixtures for every test: the toy project (driven through the CLI, or run in this process) and the repo's root.

Plain helpers are modules imported by name: pytest (no __init__.py files here) puts each test file's folder on
sys.path, and this conftest puts the two that hold helpers shared across folders there for every test:
tests/ (harness.py: run a stage or a project) and tests/stages/ (the ONNX graphs built in code).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from harness import REPO, Project

for _shared in (REPO / "tests", REPO / "tests" / "stages"):
    if str(_shared) not in sys.path:
        sys.path.insert(0, str(_shared))


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A copy of the toy project (tests/toy) with its own cache, for the CLI."""
    return Project.copy(tmp_path)


@pytest.fixture
def toy(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The same copy, set up to be loaded, planned and run in this process: its folder is the working directory
    and $TOY_RUNLOG counts the stages whose run() was called."""
    monkeypatch.setenv("TOY_RUNLOG", str(project.runlog))
    monkeypatch.delenv("PIPELINE_SIDE_CACHE", raising=False)  # the executor sets it: undone after the test
    monkeypatch.chdir(project.root)
    return project


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `loads_tensorflow` run last: once TensorFlow is in a process, importing torch's triton
    (torch.export) or paddle crashes it, so every other test runs before any of them."""
    late = [item for item in items if item.get_closest_marker("loads_tensorflow")]
    items[:] = [item for item in items if not item.get_closest_marker("loads_tensorflow")] + late
