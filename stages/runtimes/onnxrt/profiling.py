"""ONNX Runtime's per-layer profile: a session of its own with `enable_profiling`, and its JSON trace read back.

The trace (Chrome trace format) holds, per inference, one `Node` event per
kernel run (`<node>_kernel_time`, `dur` in microseconds, `args.op_name`, the
execution provider, each input's type and shape) and one `Session` event
`model_run` for the whole inference. ONNX Runtime names the node as its
optimized graph holds it: in a QDQ model on the CPU provider, Q/DQ pairs fold
into `QLinearConv`, `QGemm`... on uint8 inputs, so the precision of a node is
read from its op type (the integer ops compute in int8) and else from its first
input's element type (a MaxPool on uint8 ran in int8; a Conv on float stayed in
float). The profiling session is separate from the runner's timed one and
opened with the same threads, providers and graph optimization.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from stages.runtimes.layers import LayerProfile, LayerTime, median_ms, precision_word
from stages.runtimes.onnxrt.graph import is_quant_op

KERNEL_SUFFIX = "_kernel_time"
# Integer-arithmetic ops of ONNX Runtime's contrib domain besides QLinear* and the standard ones `is_quant_op` knows.
_INT8_CONTRIB = frozenset({"QGemm", "QAttention", "QEmbedLayerNormalization", "DynamicQuantizeMatMul"})
_INT4 = frozenset({"MatMulNBits"})


def node_precision(op_type: str, input_types: Sequence[str]) -> str:
    """What a node computed in: int8 for the integer ops (QLinearConv, ConvInteger, MatMulInteger, QGemm,
    Q/DQ), int4 for MatMulNBits, else its first input's element type (`float` -> fp32, `uint8` -> int8)."""
    if op_type in _INT4:
        return "int4"
    if op_type in _INT8_CONTRIB or is_quant_op(op_type):
        return "int8"
    return precision_word(input_types[0]) if input_types else ""


def _input_types(args: Mapping[str, Any]) -> list[str]:
    """The element types of a Node event's inputs (`input_type_shape`: [{"float": [1, 3, 8, 8]}, ...])."""
    return [next(iter(entry)) for entry in args.get("input_type_shape") or [] if isinstance(entry, dict) and entry]


def layer_times(events: Sequence[Mapping[str, Any]], runs: int) -> tuple[list[LayerTime], float | None]:
    """Each node of the trace, in the order it first ran, with the median of its last `runs` kernel times (the
    earlier ones are warm-up); and the median `model_run` time of the last `runs` inferences (None if absent)."""
    samples: dict[str, list[float]] = {}
    first: dict[str, Mapping[str, Any]] = {}
    model_runs: list[float] = []
    for event in events:
        name, cat = str(event.get("name", "")), event.get("cat")
        if cat == "Session" and name == "model_run":
            model_runs.append(float(event["dur"]) / 1e3)
        elif cat == "Node" and name.endswith(KERNEL_SUFFIX):
            node = name[: -len(KERNEL_SUFFIX)]
            samples.setdefault(node, []).append(float(event["dur"]) / 1e3)
            first.setdefault(node, event.get("args") or {})
    layers = []
    for node, args in first.items():
        op = str(args.get("op_name", ""))
        layers.append(
            LayerTime(
                name=node,
                type=op,
                kernel=str(args.get("provider", "")),
                precision=node_precision(op, _input_types(args)),
                time_ms=median_ms(samples[node][-runs:]),
            )
        )
    wall = median_ms(model_runs[-runs:]) if model_runs else None
    return layers, wall


def profile_session(
    path: Path,
    threads: int,
    providers: Sequence[str],
    graph_optimization: str,
    feeds: Mapping[str, np.ndarray],
    runs: int,
    warmup: int,
) -> LayerProfile:
    """Open a profiling session on `path` (same settings as the runner's), run `warmup` + `runs` inferences,
    read the trace from a temporary directory (removed after) and keep the last `runs`."""
    from stages.runtimes.onnx.io import session_from_onnx

    runs = max(1, runs)
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        prefix = str(Path(tmp) / "ort")
        session = session_from_onnx(path, threads, providers, graph_optimization, profile_prefix=prefix)
        for _ in range(max(0, warmup) + runs):
            session.run(None, dict(feeds))
        events = json.loads(Path(session.end_profiling()).read_text())
    layers, wall = layer_times(events, runs)
    return LayerProfile("onnxruntime", runs, tuple(layers), 0, wall)
