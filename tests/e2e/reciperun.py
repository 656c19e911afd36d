"""Running one of the repository's recipes end to end through the real CLI, in a copy of its files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def copy_recipe(root: Path, *names: str) -> Path:
    """Copy recipe files (the YAML and the modules it loads) from recipes/ into `root`."""
    for name in names:
        shutil.copy(REPO / "recipes" / name, root / name)
    return root


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


def run_recipe(root: Path, recipe: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`pipeline run RECIPE ARGS --json` in `root` with its own cache: the process and the run record."""
    env = {**os.environ, "PIPELINE_CACHE": str(root / "cache"), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "run", recipe, *args, "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else {})


def rows(record: dict) -> dict[str, dict]:
    return {s["stage"]: s for s in record["stages"]}


def report(row: dict) -> dict:
    """A validate stage's report.json, from its row of the run record."""
    return json.loads(Path(row["outputs"]["report"]).read_text())
