"""ONNX Runtime's execution providers: which this install has, and the device each one runs on.

ONNX Runtime drops a requested provider it lacks with a warning and runs the
model on the CPU, so a build or a runner asked for CUDA would report CPU
numbers as the GPU's. `unavailable` says so instead, in one line naming the
provider. onnxruntime is imported inside the functions.
"""

from __future__ import annotations

from typing import Sequence

from pipeline.errors import did_you_mean

# Providers whose work runs on a GPU; others run where their name says (CPU, DNNL, XNNPACK: the CPU).
_GPU = {
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "NvTensorRTRTXExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "WebGpuExecutionProvider",
}
_CPU = {"CPUExecutionProvider", "DnnlExecutionProvider", "XnnpackExecutionProvider"}


def device_of(provider: str) -> str:
    """The device engine.json records for a provider: "CPU", "GPU", else its own name ("OpenVINO", "CoreML")."""
    if provider in _CPU:
        return "CPU"
    if provider in _GPU:
        return "GPU"
    return provider.removesuffix("ExecutionProvider") or provider


def unavailable(providers: Sequence[str]) -> str | None:
    """Why this onnxruntime cannot run `providers` (the first one it lacks, by name), or None when it has them all."""
    import onnxruntime as ort

    have = list(ort.get_available_providers())
    known = list(ort.get_all_providers())
    for name in providers:
        if name in have:
            continue
        has = f"this onnxruntime {ort.__version__} has {', '.join(have)}"
        if name in known:
            return f"provider {name!r} is not available here ({has})"
        return f"provider {name!r} is not an ONNX Runtime provider{did_you_mean(name, known)}; {has}"
    return None
