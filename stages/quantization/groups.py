"""Quantizer groups of an NNCF-quantized OpenVINO model, and the same model with one group back in float.

A group is one operation that computes in INT8 (a MatMul, a Convolution...) with
the quantizers that feed it: the FakeQuantize on each activation input (found
through data-movement ops such as Transpose or Reshape, where NNCF propagates
it) and its compressed weight. Reverting a group bypasses those FakeQuantize
nodes and puts the float model's weight back, on a clone, with no new
calibration: cheap enough to measure every group's effect, which is what
quantize.search ranks by. NNCF's own ignored scope, applied at the next
quantization, is what the search then keeps (the ranking is only its guide).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import openvino as ov

# Ops NNCF quantizes the inputs of and that are worth keeping in float on their own.
COMPUTE = {"MatMul", "Convolution", "GroupConvolution", "ConvolutionBackpropData", "Add", "Multiply", "MVN"}
# Ops a quantizer is propagated through (data movement, no arithmetic).
PASS_THROUGH = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Split", "VariadicSplit", "Gather"}
# Ops between an 8-bit weight constant and the op that reads it.
DECOMPRESSION = {"Convert", "Subtract", "Multiply", "Reshape", "Transpose"}


@dataclass(frozen=True)
class Group:
    """One quantized operation: its name (as in the float model) and op type."""

    name: str
    type: str


def groups(quantized: "ov.Model", float_model: "ov.Model") -> list[Group]:
    """The quantized operations of `quantized` that the float model also has by name, in graph order."""
    in_float = {op.get_friendly_name() for op in float_model.get_ops()}
    found = []
    for op in quantized.get_ordered_ops():
        if op.get_type_name() not in COMPUTE or op.get_friendly_name() not in in_float:
            continue
        if any(True for _ in _quantizers(op)):
            found.append(Group(op.get_friendly_name(), op.get_type_name()))
    return found


def reverted(quantized: "ov.Model", float_model: "ov.Model", group: Group) -> "ov.Model":
    """A clone of `quantized` with `group` computing in float: its input quantizers bypassed and its 8-bit
    weights replaced by the float model's constants."""
    from openvino import opset13 as ops

    model = quantized.clone()
    node = next(op for op in model.get_ops() if op.get_friendly_name() == group.name)
    original = next(op for op in float_model.get_ops() if op.get_friendly_name() == group.name)
    for fq in list(_quantizers(node)):
        for target in list(fq.output(0).get_target_inputs()):
            target.replace_source_output(fq.input_value(0))
    for i, port in enumerate(node.inputs()):
        if i >= original.get_input_size() or not _low_bit_weight(port.get_source_output().get_node()):
            continue
        source = original.input_value(i).get_node()
        if source.get_type_name() != "Constant" or source.get_output_partial_shape(0) != port.get_partial_shape():
            continue
        port.replace_source_output(ops.constant(source.get_data()).output(0))
    model.validate_nodes_and_infer_types()
    return model


def _quantizers(op: "ov.Node") -> Iterator["ov.Node"]:
    """The FakeQuantize nodes feeding `op`'s inputs, directly or through pass-through ops."""
    seen: set[str] = set()
    stack = [port.get_source_output().get_node() for port in op.inputs()]
    while stack:
        node = stack.pop()
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            if node.get_friendly_name() not in seen:
                seen.add(node.get_friendly_name())
                yield node
        elif kind in PASS_THROUGH and node.get_input_size():
            stack.append(node.input_value(0).get_node())


def _low_bit_weight(node: "ov.Node", depth: int = 4) -> bool:
    """Whether `node` decompresses an 8-bit (or narrower) constant: Constant(i8) -> Convert -> Multiply..."""
    import openvino as ov

    low = {ov.Type.i8, ov.Type.u8, ov.Type.i4, ov.Type.u4}
    for _ in range(depth + 1):
        if node.get_type_name() == "Constant":
            return node.get_element_type() in low
        if node.get_type_name() not in DECOMPRESSION or not node.get_input_size():
            return False
        node = node.input_value(0).get_node()
    return False
