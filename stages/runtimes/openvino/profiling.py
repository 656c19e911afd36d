"""OpenVINO's per-layer profile: `InferRequest.get_profiling_info()` of a model compiled with PERF_COUNT on.

Each record names the node as the compiled graph holds it (after fusions: a
Relu fused into its Convolution is reported NOT_RUN), its type (Convolution,
FullyConnected, Reorder, Subgraph...), its exec type (the kernel:
`brgconv_avx512_I8`, `gemm_mlas_f32`, `jit_uni_f32`, `undef`), its real and
CPU time and its status. The precision a layer ran in is the exec type's
suffix. Records come from the last inference only, so the caller runs several
and keeps each layer's median. Pure Python over duck-typed records: the runner
(`runtimes.openvino.runner`) compiles and runs, this module reads.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from stages.runtimes.layers import LayerProfile, LayerTime, median_ms, precision_word

EXECUTED = "executed"


def exec_precision(exec_type: str) -> str:
    """The precision in an exec type's suffix: `brgconv_avx512_I8` -> int8, `jit_uni_f32` -> fp32,
    `jit_avx512_amx_bf16` -> bf16; '' for `undef` and the like."""
    if "_" not in exec_type:
        return ""
    return precision_word(exec_type.rsplit("_", 1)[1])


def status_of(record: Any) -> str:
    """A record's status as a word: executed, not_run, optimized_out."""
    status = record.status
    return str(getattr(status, "name", status)).rsplit(".", 1)[-1].lower()


def _ms(value: Any) -> float:
    """A profiling time (a datetime.timedelta in OpenVINO's Python API; microseconds if a plain number) in ms."""
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds()) * 1e3
    return float(value) / 1e3


def layer_times(runs: Sequence[Sequence[Any]]) -> tuple[list[LayerTime], int]:
    """The executed layers of the last run, in its order, each with its median real time over `runs` (each run
    the records of one inference); and how many records were not run or optimized out."""
    if not runs:
        raise ValueError("no profiled runs")
    samples: dict[tuple[int, str], list[float]] = {}
    for run in runs:
        for i, record in enumerate(run):
            if status_of(record) == EXECUTED:
                samples.setdefault((i, record.node_name), []).append(_ms(record.real_time))
    layers: list[LayerTime] = []
    skipped = 0
    for i, record in enumerate(runs[-1]):
        if status_of(record) != EXECUTED:
            skipped += 1
            continue
        layers.append(
            LayerTime(
                name=record.node_name,
                type=record.node_type,
                kernel=record.exec_type,
                precision=exec_precision(record.exec_type),
                time_ms=median_ms(samples[(i, record.node_name)]),
            )
        )
    return layers, skipped


def profile_request(request: Any, tensors: Mapping[str, Any], runs: int, warmup: int) -> LayerProfile:
    """Run a PERF_COUNT request `warmup` times, then `runs` times reading its profiling info after each; the
    layer times (medians) and the median wall time of one profiled inference."""
    for name, tensor in tensors.items():
        request.set_tensor(name, tensor)
    for _ in range(max(0, warmup)):
        request.infer()
    records: list[list[Any]] = []
    walls: list[float] = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        request.infer()
        walls.append((time.perf_counter() - t0) * 1e3)
        records.append(list(request.get_profiling_info()))
    layers, skipped = layer_times(records)
    return LayerProfile("openvino", len(records), tuple(layers), skipped, median_ms(walls))
