"""Shared test helpers: call a stage directly (no engine), and find the repo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.schema import ModelSpec
from pipeline.stage import Stage, StageContext

REPO = Path(__file__).resolve().parents[1]

# Helper modules are imported by name: without __init__.py files pytest puts each test file's folder on sys.path,
# so a helper shared across folders lives in one this conftest puts there for every test: tests/ or tests/stages/.
for _shared in (REPO / "tests", REPO / "tests" / "stages"):
    if str(_shared) not in sys.path:
        sys.path.insert(0, str(_shared))


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
        outputs=dict(kind.outputs),
    )
    summary = kind().run(ctx) or {}
    for name, spec in kind.outputs.items():
        produced = outdir / spec.path
        assert produced.is_dir() if spec.is_dir else produced.is_file(), f"{kind.kind} did not write output {name}"
    return summary


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


@pytest.fixture
def repo() -> Path:
    return REPO
