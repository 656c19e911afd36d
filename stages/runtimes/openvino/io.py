"""OpenVINO model helpers shared by quantize.nncf and build.openvino: read, name, count, save, find attention.

`save_ir` is the one way these kinds write an IR, so the bytes are reproducible:
OpenVINO names nodes that were created without a name `<Type>_<instance id>`,
where the id is a process-wide counter. Two identical builds in one worker (or
after different warm-up work) would then write different XML. Those names are
renumbered in topological order before saving; the weights file is unaffected.
openvino is imported inside the functions (kind modules stay cheap to import).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import openvino as ov

    from stages.runtimes.engine_info import TensorInfo

IR_XML, IR_BIN = "model.xml", "model.bin"
# Node types that carry low-precision quantization in an IR.
QUANT_OPS = ("FakeQuantize", "FakeConvert")
_GENERATED = re.compile(r"([A-Z][A-Za-z0-9]*)_(\d+)")


def ir_xml(path: Path | str) -> Path:
    """The .xml of an OpenVINO IR: the .xml file itself, or a directory's model.xml, else its only .xml.

    The one rule every kind and runner finds an IR by; ValueError, one line naming the folder and what it
    holds, for anything else."""
    path = Path(path)
    if path.is_dir():
        xml = path / IR_XML
        if xml.is_file():
            return xml
        xmls = sorted(p for p in path.glob("*.xml") if p.is_file())
        if len(xmls) == 1:
            return xmls[0]
        raise ValueError(
            f"{path.name}/ is not an OpenVINO IR directory: no {IR_XML} and not exactly one .xml "
            f"(has: {_listing(path)})"
        )
    if not path.is_file():
        raise ValueError(f"no such model file {path}")
    if path.suffix.lower() != ".xml":
        raise ValueError(f"{path.name}: not an OpenVINO IR (an .xml file, or a directory holding {IR_XML})")
    return path


def _listing(directory: Path, most: int = 8) -> str:
    """A directory's entries by name, at most `most` of them, for an error line."""
    names = sorted(p.name for p in directory.iterdir())
    if not names:
        return "nothing"
    more = f", and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def model_from_artifact(core: "ov.Core", path: Path | str) -> "ov.Model":
    """Read an ONNX file or an IR (`ir_xml`) with OpenVINO's frontends (core.read_model: no conversion telemetry)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return core.read_model(str(path))
    if path.is_file() and path.suffix.lower() != ".xml":
        raise ValueError(
            f"{path.name}: expected an .onnx file or an OpenVINO IR (.xml, or a directory holding {IR_XML})"
        )
    return core.read_model(str(ir_xml(path)))


def canonical_names(model: "ov.Model") -> int:
    """Renumber auto-generated `<Type>_<n>` node names in topological order; returns how many changed.

    A name counts as generated when it is a CamelCase word, an underscore and a
    number (`Constant_5924`, or `ShapeOf_61167` on the Const that folding left
    of a ShapeOf). The word is kept, the number becomes a per-model counter.
    """

    def generated(op: "ov.Node") -> "re.Match[str] | None":
        return _GENERATED.fullmatch(op.get_friendly_name())

    taken = {op.get_friendly_name() for op in model.get_ops() if not generated(op)}
    counter = changed = 0
    for op in model.get_ordered_ops():
        match = generated(op)
        if match is None:
            continue
        while True:
            counter += 1
            name = f"{match.group(1)}_{counter}"
            if name not in taken:
                break
        taken.add(name)
        if op.get_friendly_name() != name:
            op.set_friendly_name(name)
            changed += 1
    return changed


def reshape_inputs(model: "ov.Model", shapes: dict[str, Any]) -> None:
    """`model.reshape(shapes)` (input name -> PartialShape), OpenVINO's refusal as one line naming the shapes."""
    from pipeline.errors import one_line

    try:
        model.reshape(shapes)
    except RuntimeError as exc:
        wanted = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"cannot reshape the model to {wanted}: {one_line(str(exc), 300)}") from None


def save_ir(model: "ov.Model", directory: Path, compress_to_fp16: bool) -> Path:
    """Write `model` as directory/model.xml + model.bin, names canonical and without the converter's record of
    its arguments (`convert_model` keeps the input's absolute path there: the bytes would depend on the folder
    and the machine, and a shipped IR would carry a scratch path); returns the .xml path."""
    import openvino as ov

    directory.mkdir(parents=True, exist_ok=True)
    canonical_names(model)
    if model.has_rt_info(["conversion_parameters"]):
        del model.get_rt_info()["conversion_parameters"]
    xml = directory / IR_XML
    ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    return xml


def count_ops(model: "ov.Model", types: Iterable[str] = QUANT_OPS) -> int:
    """How many nodes of the given types the model holds (default: FakeQuantize/FakeConvert)."""
    wanted = set(types)
    return sum(op.get_type_name() in wanted for op in model.get_ops())


def int8_constants(model: "ov.Model") -> int:
    """Weight constants stored in 8 bits or fewer (NNCF keeps quantized weights as i8/u8 + a scale)."""
    import openvino as ov

    low = {ov.Type.i8, ov.Type.u8, ov.Type.i4, ov.Type.u4}
    return sum(1 for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_element_type() in low)


def compressed_fp16_constants(model: "ov.Model") -> int:
    """f16 weight constants decompressed at run time (what save_model(compress_to_fp16=True) leaves)."""
    import openvino as ov

    return sum(1 for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.f16)


def io_names(model: "ov.Model") -> tuple[list[str], list[str]]:
    """The model's input and output tensor names (one name each, as runners address them)."""
    return [i.get_any_name() for i in model.inputs], [o.get_any_name() for o in model.outputs]


# Ops attention may put between its MatMuls and the Softmax: scaling, masking, reshaping, casts.
_ATTENTION_GLUE = frozenset(
    {
        "Add",
        "Multiply",
        "Divide",
        "Subtract",
        "Select",
        "Reshape",
        "Transpose",
        "Convert",
        "Squeeze",
        "Unsqueeze",
        "Concat",
        "Maximum",
        "Minimum",
    }
)
_ATTENTION_OPS = frozenset({"ScaledDotProductAttention", "MultiHeadAttention"})


def attention_ops(model: "ov.Model", depth: int = 4) -> list[str]:
    """Names of the Softmax nodes that sit in attention (MatMul -> [glue] -> Softmax -> [glue] -> MatMul), plus any
    fused attention op. `depth`: glue ops allowed on each side (scale, mask add, reshape...)."""
    found = []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in _ATTENTION_OPS:
            found.append(op.get_friendly_name())
        elif (
            kind == "Softmax"
            and _reaches_matmul(op, depth, upstream=True)
            and _reaches_matmul(op, depth, upstream=False)
        ):
            found.append(op.get_friendly_name())
    return found


def _reaches_matmul(op: "ov.Node", depth: int, upstream: bool) -> bool:
    """Whether a MatMul is within `depth` glue ops of `op`, following data inputs (upstream) or consumers."""
    frontier = [op]
    for _ in range(depth + 1):
        nxt = []
        for node in frontier:
            if upstream:
                neighbours = [node.input_value(i).get_node() for i in range(node.get_input_size())]
            else:
                neighbours = [t.get_node() for out in node.outputs() for t in out.get_target_inputs()]
            for other in neighbours:
                kind = other.get_type_name()
                if kind == "MatMul":
                    return True
                if kind in _ATTENTION_GLUE:
                    nxt.append(other)
        frontier = nxt
    return False


def tensor_info(port: Any) -> "TensorInfo":
    """A port as engine.json's TensorInfo: dims as OpenVINO prints them ("1..8" for a range), dtype by the one
    table's name (`runtimes.dtypes`; numpy's name, by OpenVINO's own mapping, for a type the table lacks)."""
    import numpy as np

    from stages.runtimes.dtypes import name_of_openvino
    from stages.runtimes.engine_info import TensorInfo

    etype = port.get_element_type()
    dtype = name_of_openvino(etype.get_type_name()) or np.dtype(etype.to_dtype()).name
    shape = port.get_partial_shape()
    dims = None if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else str(d) for d in shape)
    return TensorInfo(name=port.get_any_name(), dtype=dtype, dims=dims)
