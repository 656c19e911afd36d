"""What a packaging stage serves: each artifact of its `models` fan-in, as one `Member` both packagers read.

A member is a built engine (a directory with engine.json: build.openvino, build.onnxruntime or build.tensorrt)
or a bare model file (an .onnx file served by ONNX Runtime, an IR directory served by OpenVINO). Its I/O comes
from engine.json when there is one, else from the file itself (onnx's graph, OpenVINO's partial shapes), in
engine.json's form (`TensorInfo`: numpy dtype names, ints or "min..max"/"?" dims), so the serving configs are
written and checked against one description whatever built the artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stages.runtimes import engine_info
from stages.runtimes.engine_info import EngineInfo, TensorInfo

Backend = Literal["openvino", "onnxruntime", "tensorrt"]
ENGINE_SUFFIXES = (".engine", ".plan")


@dataclass(frozen=True)
class Member:
    """One artifact to serve: what the recipe calls it, its backend, the files to copy and its I/O."""

    label: str  # as the recipe names it: "engine@openvino-fp32", "simplify"
    path: Path
    backend: Backend
    files: tuple[Path, ...]  # what the server reads: model.xml + model.bin, model.onnx, or the plan
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    precision: str | None = None  # engine.json's, when there is one
    compute_capability: str | None = None  # a TensorRT plan's GPU ("8.9")
    accelerator: str | None = None  # the declared target's GPU name ("L4"), when one was declared
    info: EngineInfo | None = None

    @property
    def on_gpu(self) -> bool:
        return self.backend == "tensorrt"


def member_from(label: str, path: Path) -> Member:
    """The Member for an artifact; ValueError naming `label` when it is none of the forms above."""
    path = Path(path)
    if engine_info.sidecar(path) is not None and not (path.is_file() and path.suffix == ".onnx"):
        return _from_engine(label, path, engine_info.read(path))
    if path.is_file() and path.suffix == ".onnx":
        inputs, outputs = _onnx_io(path)
        return Member(label, path, "onnxruntime", (path,), inputs, outputs, _onnx_precision(path))
    xml = _ir_xml(path)
    if xml is not None:
        files = _ir_files(label, xml)
        inputs, outputs = _ir_io(xml)
        return Member(label, path, "openvino", files, inputs, outputs, _ir_precision(xml))
    raise ValueError(f"{label}: {path.name} is not an engine directory (engine.json), an .onnx file or an IR")


def model_io(path: Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The inputs and outputs of a model file itself (an .onnx graph, an IR's .xml), whatever engine.json lies
    beside it: what a server reading that file sees. ValueError for any other file."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _onnx_io(path)
    if path.suffix.lower() == ".xml":
        return _ir_io(path)
    raise ValueError(f"{path.name}: not an .onnx file or an IR .xml")


def _from_engine(label: str, path: Path, info: EngineInfo) -> Member:
    folder = path if path.is_dir() else path.parent
    if info.backend == "openvino":
        xml = _ir_xml(folder)
        if xml is None:
            raise ValueError(f"{label}: engine.json says openvino, but {folder} holds no IR")
        files: tuple[Path, ...] = _ir_files(label, xml)
    elif info.backend == "onnxruntime":
        found = sorted(folder.glob("*.onnx"))
        if len(found) != 1:
            raise ValueError(f"{label}: engine.json says onnxruntime, but {folder} holds {len(found)} .onnx files")
        files = (found[0],)
    else:
        plans = sorted(p for s in ENGINE_SUFFIXES for p in folder.glob(f"*{s}"))
        if len(plans) != 1:
            raise ValueError(f"{label}: engine.json says tensorrt, but {folder} holds {len(plans)} engine files")
        files = (plans[0],)
    return Member(
        label,
        path,
        info.backend,
        files,
        info.inputs,
        info.outputs,
        info.precision,
        info.device.compute_capability,
        info.device.accelerator,
        info,
    )


def _ir_files(label: str, xml: Path) -> tuple[Path, Path]:
    """An IR's two files; ValueError naming `label` when the weights are not beside the .xml."""
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise ValueError(f"{label}: {xml.name} has no {weights.name} beside it")
    return xml, weights


def _ir_xml(path: Path) -> Path | None:
    from stages.runtimes.openvino.io import ir_xml

    try:
        return ir_xml(path)
    except ValueError:
        return None


def _onnx_io(path: Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """An ONNX graph's inputs (initializers excluded) and outputs; a symbolic or unknown dim is "?"."""
    import onnx

    from stages.runtimes.onnx.io import load_onnx

    graph = load_onnx(path).graph
    inits = {i.name for i in graph.initializer}

    def tensor(value: "onnx.ValueInfoProto") -> TensorInfo:
        t = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "float32"
        dims = (
            tuple(d.dim_value if d.HasField("dim_value") else "?" for d in t.shape.dim) if t.HasField("shape") else None
        )
        return TensorInfo(name=value.name, dtype=dtype, dims=dims)

    return (
        tuple(tensor(v) for v in graph.input if v.name not in inits),
        tuple(tensor(v) for v in graph.output),
    )


def _ir_io(xml: Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """An IR's inputs and outputs, dims as OpenVINO prints them ("1..32", "?")."""
    import openvino as ov

    from stages.runtimes.openvino.io import tensor_info

    model = ov.Core().read_model(str(xml))
    return tuple(tensor_info(p) for p in model.inputs), tuple(tensor_info(p) for p in model.outputs)


def _onnx_precision(path: Path) -> str:
    """A bare model's precision as build.onnxruntime would record it: int8 with Q/DQ or integer ops (quantize.qdq's
    output), fp16, else fp32; the smoke request's default gate depends on it."""
    from stages.runtimes.onnx.io import load_onnx
    from stages.runtimes.onnxrt.graph import precision_of

    return precision_of(load_onnx(path))


def _ir_precision(xml: Path) -> str | None:
    """int8 for an IR holding FakeQuantize or FakeConvert (quantize.nncf's output), else None (its precision is the
    one it is compiled with)."""
    import openvino as ov

    from stages.runtimes.openvino.io import count_ops

    return "int8" if count_ops(ov.Core().read_model(str(xml))) else None
