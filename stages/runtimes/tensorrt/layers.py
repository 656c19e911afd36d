"""What a TensorRT engine's inspector JSON says about it: the precision its layers compute in.

Shared by the builder (`runtimes.tensorrt.build`, which records it in engine.json) and the
runtime (`runtimes.tensorrt.runner`, which labels what it runs), so the runtime never
imports the builder. Pure Python: testable without tensorrt.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stages.runtimes.engine_info import Precision

# (pattern over the lower-cased type strings, label), lowest precision first
_PRECISION_WORDS: "tuple[tuple[str, Precision], ...]" = (
    (r"\bint8\b", "int8"),  # not "uint8" (a plain I/O type, not quantized compute)
    (r"\bfp8\b|\be4m3\b", "fp8"),
    (r"\bhalf\b|\bfp16\b", "fp16"),
    (r"\bbf16\b|\bbfloat16\b", "bf16"),
)


def precision_from_layers(layers: Any) -> "Precision":
    """'int8', 'fp8', 'fp16', 'bf16' or 'fp32': the lowest precision any layer computes in (inspector JSON).

    Only the "Layers" list is read (TensorRT 11 adds an "I/O Tensors" list whose
    "DataType" is the engine's I/O, not its compute). TensorRT 10 writes
    "Format/Datatype" per layer tensor, TensorRT 11 splits it into "Format" and
    "DataType"; every string under a key naming a type is read. Needs a
    DETAILED-verbosity build (LAYER_NAMES_ONLY gives names only, read as fp32).
    """
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and "type" in k.lower():
                    found.add(v.lower())
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(layers.get("Layers", layers) if isinstance(layers, dict) else layers)
    text = " ".join(found)
    for pattern, label in _PRECISION_WORDS:
        if re.search(pattern, text):
            return label
    return "fp32"
