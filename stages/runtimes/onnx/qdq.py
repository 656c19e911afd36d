"""Q/DQ graph edits and counts for quantize.qdq: TensorRT's residual-add placement, and what got quantized.

TensorRT fuses a convolution with the element-wise Add that follows it (a
residual connection) when the Add's *other* input is quantized and the
convolution's own output is not: one kernel computes conv + residual + ReLU
and writes INT8. ONNX Runtime's QDQ quantizer puts Q/DQ on both inputs of an
Add, which blocks that fusion, so `drop_residual_qdq` removes the pair on the
input that comes straight from a weighted op (Conv, ConvTranspose, Gemm,
MatMul), as NVIDIA's ModelOpt does after its own ORT quantization pass
(`build_non_residual_input_map` + `remove_partial_input_qdq`). When both
inputs come from weighted ops (a downsampling block), the later one in the
graph is the one fused.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

WEIGHTED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def drop_residual_qdq(model: "onnx.ModelProto") -> int:
    """Unquantize the weighted-op input of each residual Add (in place); returns how many Adds changed."""
    graph = model.graph
    producer = {o: (i, n) for i, n in enumerate(graph.node) for o in n.output}
    changed = 0
    for add in list(graph.node):
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        found = [_qdq_source(producer, t) for t in add.input]
        sources = [s for s in found if s is not None]
        if len(sources) != len(found):
            continue  # both inputs must be quantized, or there is no residual to keep quantized
        weighted = [
            (producer[s[2]][0], k)
            for k, s in enumerate(sources)
            if s[2] in producer and producer[s[2]][1].op_type in WEIGHTED
        ]
        if not weighted:
            continue
        _, k = max(weighted)  # the later weighted producer is the one TensorRT fuses with the Add
        dq, q, source = sources[k]
        add.input[k] = source
        changed += 1
        _remove_if_unused(model, dq)
        _remove_if_unused(model, q)
    if changed:
        remove_unused_initializers(model)
    return changed


def qdq_stats(model: "onnx.ModelProto") -> dict[str, Any]:
    """Q/DQ node counts, which op types had an input quantized, and linear ops left in float."""
    from onnx import numpy_helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    ops = Counter(n.op_type for n in graph.node)
    quantized: Counter[str] = Counter()
    float_linear = []
    for node in graph.node:
        fed = [producer.get(t) is not None and producer[t].op_type == "DequantizeLinear" for t in node.input[:2] if t]
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(fed):
            quantized[node.op_type] += 1
        elif node.op_type in LINEAR:
            float_linear.append(node.name)
    nonzero_zp = 0
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in inits:
            nonzero_zp += int(np.any(numpy_helper.to_array(inits[node.input[2]]) != 0))
    return {
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "quantized_ops": dict(sorted(quantized.items())),
        "float_linear_ops": float_linear,
        "nonzero_zero_points": nonzero_zp,
    }


def remove_unused_initializers(model: "onnx.ModelProto") -> None:
    used = {t for n in model.graph.node for t in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def prune_opset_imports(model: "onnx.ModelProto") -> None:
    """Drop opset imports of domains no node uses (quant_pre_process saves ORT's whole list of domains)."""
    used = {n.domain for n in model.graph.node} | {f.domain for f in model.functions} | {""}
    keep = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _qdq_source(producer: dict[str, tuple[int, Any]], tensor: str) -> tuple[Any, Any, str] | None:
    """(DequantizeLinear, QuantizeLinear, float source tensor) when `tensor` is DQ(Q(source)), else None."""
    dq = producer.get(tensor)
    if dq is None or dq[1].op_type != "DequantizeLinear":
        return None
    q = producer.get(dq[1].input[0])
    if q is None or q[1].op_type != "QuantizeLinear":
        return None
    return dq[1], q[1], q[1].input[0]


def _remove_if_unused(model: "onnx.ModelProto", node: Any) -> None:
    consumers = {t for n in model.graph.node if n is not node for t in n.input}
    outputs = {o.name for o in model.graph.output}
    if not any(o in consumers or o in outputs for o in node.output):
        model.graph.node.remove(node)
