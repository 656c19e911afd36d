"""Parameter groups several kinds share (light: imported with the kind modules)."""

from __future__ import annotations

from pydantic import Field

from pipeline.stage import Params


class SelfCheckParams(Params):
    """Tolerances of the ONNX Runtime self-check that the ONNX stages run on their output."""

    check_atol: float = Field(1e-4, ge=0, description="absolute tolerance of the self-check")
    check_rtol: float = Field(1e-3, ge=0, description="relative tolerance of the self-check (times |reference|)")
    check_seed: int = Field(0, description="seed of the self-check's random input")
