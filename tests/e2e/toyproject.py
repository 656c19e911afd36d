"""The toy project for end-to-end tests: copied to a temp dir, driven through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TOY = Path(__file__).parent / "toy"


@dataclass
class Project:
    root: Path
    cache: Path
    runlog: Path

    @property
    def recipe(self) -> Path:
        return self.root / "toy.yaml"

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = {
            **os.environ,
            "TOY_RUNLOG": str(self.runlog),
            "PIPELINE_CACHE": str(self.cache),
            "COLUMNS": "200",
            **(env or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli.main", *args],
            cwd=self.root,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None, ctrl_c: bool = False) -> subprocess.Popen:
        """Start the CLI without waiting; `ctrl_c=True` gives it default SIGINT handling (see `_default_sigint`)."""
        full_env = {**os.environ, "TOY_RUNLOG": str(self.runlog), "PIPELINE_CACHE": str(self.cache), **(env or {})}
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", *args],
            cwd=self.root,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint if ctrl_c else None,
        )  # noqa: PLW1509 - no threads here

    def runs(self) -> list[str]:
        """Stage names whose run() was called, in order, since the project was made."""
        return self.runlog.read_text().split() if self.runlog.exists() else []

    def write_recipe(self, text: str, name: str = "toy.yaml") -> Path:
        p = self.root / name
        p.write_text(text)
        return p

    def lock(self) -> dict:
        import yaml

        return yaml.safe_load((self.root / "toy.lock").read_text())["stages"]

    def run_json(self, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
        proc = self.cli("run", *args, "--json")
        return proc, json.loads(proc.stdout) if proc.stdout.strip() else {}


def _default_sigint() -> None:
    """In the child before exec: SIGINT as a terminal's Ctrl-C would find it.

    A suite started with SIGINT ignored (a background job of a non-interactive
    shell, some CI runners) passes SIG_IGN on to every child, and Python then
    installs no KeyboardInterrupt handler. The CLI keeps that immunity on
    purpose (as Unix tools do), so the test, not the CLI, resets it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    shutil.copytree(TOY, root, ignore=shutil.ignore_patterns("__pycache__", "*.lock"))
    return Project(root=root, cache=tmp_path / "cache", runlog=tmp_path / "runlog")
