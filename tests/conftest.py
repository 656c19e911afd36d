"""Shared test helpers: call a stage directly (no engine), and find the repo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.schema import ModelSpec
from pipeline.stage import Stage, StageContext

REPO = Path(__file__).resolve().parents[1]


def run_stage(
    kind: type[Stage],
    outdir: Path,
    params: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    model: ModelSpec | dict | None = None,
    recipe_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one stage kind in-process, as the worker would, and check its declared outputs exist."""
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
    )
    summary = kind().run(ctx) or {}
    for name, spec in kind.outputs.items():
        produced = outdir / spec.path
        assert produced.is_dir() if spec.is_dir else produced.is_file(), f"{kind.kind} did not write output {name}"
    return summary


@pytest.fixture
def repo() -> Path:
    return REPO
