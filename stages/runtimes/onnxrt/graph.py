"""What an ONNX graph says about the engine ONNX Runtime makes of it: its precision, its ops, its I/O types.

Shared by the ONNX Runtime runner (its precision label) and build.onnxruntime
(engine.json), so the two never disagree on what an "int8" graph is. onnx is
imported inside the functions; the dtype names come from the one table
(`runtimes.dtypes`).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Iterator

from stages.runtimes.dtypes import ELEMENT_TYPES
from stages.runtimes.engine_info import Precision

if TYPE_CHECKING:
    import onnx

# Ops that compute in integers (besides every QLinear* op, standard or com.microsoft's): the graph is INT8.
QUANT_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeLinear",
        "MatMulNBits",
    }
)
_NAME_OF_ONNX = {t.onnx: t.name for t in ELEMENT_TYPES}


def is_quant_op(op_type: str) -> bool:
    return op_type in QUANT_OPS or op_type.startswith("QLinear")


def nodes(graph: "onnx.GraphProto") -> Iterator["onnx.NodeProto"]:
    """Every node of `graph`, and of the subgraphs its If/Loop/Scan nodes hold."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from nodes(attr.g)
            for sub in attr.graphs:
                yield from nodes(sub)


def op_counts(graph: "onnx.GraphProto") -> dict[str, int]:
    """How many nodes of each op type the graph holds (subgraphs included), by op type."""
    return dict(sorted(Counter(n.op_type for n in nodes(graph)).items()))


def precision_of(model: "onnx.ModelProto") -> Precision:
    """'int8' for QDQ or integer-op graphs, 'fp16'/'bf16' for half-precision graphs, else 'fp32'."""
    import onnx

    graph = model.graph
    if any(is_quant_op(n.op_type) for n in nodes(graph)):
        return "int8"
    types = {t.data_type for t in graph.initializer}
    types |= {v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)}
    if onnx.TensorProto.FLOAT16 in types:
        return "fp16"
    if onnx.TensorProto.BFLOAT16 in types:
        return "bf16"
    return "fp32"


def graph_inputs(graph: "onnx.GraphProto") -> list["onnx.ValueInfoProto"]:
    """The inputs a caller feeds: the graph's inputs less its initializers (older exporters list both)."""
    weights = {i.name for i in graph.initializer}
    return [v for v in graph.input if v.name not in weights]


def dtype_name(value: "onnx.ValueInfoProto") -> str:
    """engine.json's name of a tensor's element type ("float32", "int64", "bfloat16"); ValueError naming the
    tensor for a type engine.json cannot record (strings, sequences, an unset type)."""
    import onnx

    elem = value.type.tensor_type.elem_type
    name = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else str(elem)
    if not value.type.HasField("tensor_type") or name not in _NAME_OF_ONNX:
        raise ValueError(f"tensor {value.name!r}: element type {name} is not one engine.json records")
    return _NAME_OF_ONNX[name]


def shape_of(value: "onnx.ValueInfoProto") -> tuple[int | str | None, ...] | None:
    """A tensor's dims: an int where fixed, its symbolic name (dim_param) where named, None where unknown;
    None for the whole shape when even the rank is unknown."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(
        d.dim_value if d.HasField("dim_value") else d.dim_param if d.HasField("dim_param") else None
        for d in tensor.shape.dim
    )
