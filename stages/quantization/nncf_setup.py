"""What quantize.nncf and quantize.search share about NNCF itself: importing it with its telemetry off, the
model type `auto` resolves to (attention found or not), and the SmoothQuant alphas NNCF applies there."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import openvino as ov


@dataclass(frozen=True)
class ModelType:
    """The NNCF model type asked for (auto, transformer, none), the one used, and why."""

    requested: str
    used: str
    why: str

    def __str__(self) -> str:
        return f"{self.used} ({self.why})"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "smooth_quant": smooth_quant(self.used)}


def resolve_model_type(choice: str, model: "ov.Model") -> ModelType:
    """transformer or none, and why: `auto` looks for attention in the graph."""
    from stages.runtimes.openvino.io import attention_ops

    if choice != "auto":
        return ModelType(choice, choice, "set in the recipe")
    found = attention_ops(model)
    if found:
        plural = "s" if len(found) > 1 else ""
        return ModelType(choice, "transformer", f"auto: attention found at {len(found)} Softmax node{plural}")
    return ModelType(choice, "none", "auto: no attention found")


def smooth_quant(model_type: str) -> dict[str, float] | None:
    """The SmoothQuant alphas NNCF applies in transformer mode (its defaults; negative = off), for the report."""
    if model_type != "transformer":
        return None
    from nncf.quantization.advanced_parameters import AdvancedSmoothQuantParameters

    alphas = AdvancedSmoothQuantParameters()
    return {"matmul": alphas.matmul, "convolution": alphas.convolution}


def import_nncf() -> Any:
    """nncf with its telemetry off: NNCF_CI must be set before nncf.telemetry is first imported."""
    os.environ.setdefault("NNCF_CI", "1")
    import nncf

    return nncf
