"""What a runner's profiler says about each layer: `LayerTime`, and the words every runtime's profile maps to.

Each runtime names layers, kernels and precisions its own way (OpenVINO's
`brgconv_avx512_I8`, ONNX Runtime's `QLinearConv` on uint8 inputs, TensorRT's
`Row major linear Int8 format`); a runner's `profile` turns them into
`LayerTime`s with one precision vocabulary (`int8`, `fp32`, `bf16`, `fp16`,
`fp8`, ...), so validate's report and report.compare read every backend alike.
Pure Python: the parsers of each runtime's output are testable without it.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

FLOAT_PRECISIONS = ("fp32", "bf16", "fp16")  # a compute layer in one of these, in an INT8 engine, stayed in float

# Element-type words -> precision (lower-cased, as runtimes spell them in kernels, traces and inspector JSON).
_TYPE_WORDS: dict[str, str] = {
    "i8": "int8",
    "u8": "int8",
    "int8": "int8",
    "uint8": "int8",
    "i4": "int4",
    "u4": "int4",
    "int4": "int4",
    "f32": "fp32",
    "fp32": "fp32",
    "float": "fp32",
    "float32": "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "f16": "fp16",
    "fp16": "fp16",
    "half": "fp16",
    "float16": "fp16",
    "fp8": "fp8",
    "f8e4m3": "fp8",
    "f8e5m2": "fp8",
    "float8e4m3fn": "fp8",
    "i32": "int32",
    "int32": "int32",
    "i64": "int64",
    "int64": "int64",
    "boolean": "bool",
    "bool": "bool",
    "f64": "fp64",
    "double": "fp64",
}

# Layer types that do a model's arithmetic (convolutions, matrix products): the ones INT8 is meant to speed up.
# Matched at the start of the lower-cased type, after a fused/quantized prefix; `convert` is not a convolution.
_COMPUTE = re.compile(
    r"^(?:qlinear|fused|nhwcfused|quantized|q|cask|dynamicquantize)?"
    r"(?:conv(?!ert)|groupconv|deconv|matmul|fullyconnected|gemm|matrixmultiply|innerproduct|einsum|attention)"
)


@dataclass(frozen=True)
class LayerTime:
    """One layer as its runtime ran it: `time_ms` is the median over the profiled runs (None where no profiler
    timed it: a TensorRT engine described by its inspector alone); `kernel` the implementation the runtime
    chose (OpenVINO's exec type, ONNX Runtime's execution provider, TensorRT's tactic)."""

    name: str
    type: str
    kernel: str
    precision: str
    time_ms: float | None
    status: str = "executed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerProfile:
    """A runner's per-layer profile of one input: the layers that ran, in execution order; how many it reported
    as not run or optimized out (left out of `layers`); the median wall time of one profiled inference
    (profiling on, so only a fallback for the whole-model latency); notes on what the profile cannot say."""

    backend: str
    runs: int
    layers: tuple[LayerTime, ...]
    skipped: int = 0
    wall_ms: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def precision_word(word: str) -> str:
    """One element-type word (`I8`, `f32`, `Half`, `uint8`, `BFloat16`) as a precision; '' for none known."""
    return _TYPE_WORDS.get(word.strip().lower(), "")


def is_compute(layer_type: str) -> bool:
    """Whether a layer type does the arithmetic INT8 quantizes (Conv, MatMul, FullyConnected, Gemm, their
    fused and quantized forms, TensorRT's Cask kernels), as opposed to data movement and elementwise ops."""
    return bool(_COMPUTE.match(layer_type.strip().lower()))


def is_int8_engine(precision: str) -> bool:
    """Whether a runner's precision label names an INT8 engine (`int8 (f32 exec)`, `int8 (tensorrt)`)."""
    return precision.strip().lower().startswith("int8")


def median_ms(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def medians(times: Mapping[str, list[float]], last: int | None = None) -> dict[str, float]:
    """Each name's median time over its `last` samples (all when None): warm-up runs come first and drop out."""
    return {name: median_ms(v[-last:] if last else v) for name, v in times.items() if v}


def float_after_int8(layers: Iterable[LayerTime]) -> list[LayerTime]:
    """The compute layers that ran in a float precision: in an INT8 engine, the layers quantization missed
    (or the runtime chose not to run in INT8)."""
    return [layer for layer in layers if is_compute(layer.type) and layer.precision in FLOAT_PRECISIONS]


def top(layers: Iterable[LayerTime], n: int = 10) -> list[LayerTime]:
    """The `n` slowest timed layers, slowest first (ties in execution order)."""
    timed = [layer for layer in layers if layer.time_ms is not None]
    return sorted(timed, key=lambda layer: -(layer.time_ms or 0.0))[:n]


def precision_shares(layers: Iterable[LayerTime]) -> dict[str, float]:
    """Share of the summed layer time spent in each precision ('' counted as `unknown`), largest first; they
    sum to 1. Empty when no layer was timed (or every time is zero)."""
    totals: dict[str, float] = {}
    for layer in layers:
        if layer.time_ms is not None:
            key = layer.precision or "unknown"
            totals[key] = totals.get(key, 0.0) + layer.time_ms
    whole = sum(totals.values())
    if whole <= 0:
        return {}
    return {k: v / whole for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
