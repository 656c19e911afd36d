"""Small hand-built ONNX graphs for the stage tests (no torch needed), and an OpenVINO IR made from one.

Each builder returns a ModelProto whose structure the tests know exactly: which
nodes are dangling, foldable, removable, and what the outputs are called.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stages.runtimes import engine_info
from stages.runtimes.engine_info import EngineInfo

OPSET = [helper.make_opsetid("", 17)]


def _const(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(value.astype(np.float32), name)


def mlp(reverse_nodes: bool = False) -> onnx.ModelProto:
    """input[batch,4] -MatMul-> mm -Identity(ident)-> id -Relu(relu)-> act -Add(+bias)-> pre -Identity(final)-> logits.

    `bias` is computed from two constants (node `const_add`: foldable), and node
    `dangling` (Neg of mm) feeds nothing.
    """
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["mm"], name="matmul"),
        helper.make_node("Identity", ["mm"], ["id"], name="ident"),
        helper.make_node("Relu", ["id"], ["act"], name="relu"),
        helper.make_node("Add", ["c1", "c2"], ["bias"], name="const_add"),
        helper.make_node("Add", ["act", "bias"], ["pre"], name="add"),
        helper.make_node("Identity", ["pre"], ["logits"], name="final"),
        helper.make_node("Neg", ["mm"], ["unused"], name="dangling"),
    ]
    if reverse_nodes:
        nodes.reverse()
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[
            _const("w", rng.standard_normal((4, 3))),
            _const("c1", rng.standard_normal(3)),
            _const("c2", rng.standard_normal(3)),
        ],
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="tests", ir_version=8)


def conv_bn() -> onnx.ModelProto:
    """input[batch,3,8,8] -Conv-> -BatchNormalization-> -Relu-> * (two + three, foldable) -> out."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["input", "cw", "cb"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv", "scale", "shift", "mean", "var"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["act"], name="relu"),
        helper.make_node("Add", ["two", "three"], ["five"], name="const_add"),
        helper.make_node("Mul", ["act", "five"], ["out"], name="mul"),
    ]
    inits = [
        _const("cw", rng.standard_normal((4, 3, 3, 3))),
        _const("cb", rng.standard_normal(4)),
        _const("scale", rng.uniform(0.5, 1.5, 4)),
        _const("shift", rng.standard_normal(4)),
        _const("mean", rng.standard_normal(4)),
        _const("var", rng.uniform(0.5, 1.5, 4)),
        _const("two", np.array([2.0])),
        _const("three", np.array([3.0])),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="tests", ir_version=8)


def classifier(
    seed: int = 0,
    classes: int = 10,
    bias: np.ndarray | None = None,
    weight_scale: float = 1.0,
) -> onnx.ModelProto:
    """input[batch,3,8,8] -Conv(4)-> Relu -> Flatten -> Gemm -> logits[batch, classes]: every pixel counts,
    so on random inputs the top-1 class varies from sample to sample."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(f32), "cw"),
        numpy_helper.from_array(rng.standard_normal(4).astype(f32) * 0.1, "cb"),
        numpy_helper.from_array((rng.standard_normal((classes, 256)) * weight_scale / 16).astype(f32), "gw"),
        numpy_helper.from_array((bias if bias is not None else rng.standard_normal(classes) * 0.1).astype(f32), "gb"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "cw", "cb"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("Flatten", ["act"], ["flat"]),
        helper.make_node("Gemm", ["flat", "gw", "gb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=8)


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def ir_from_onnx(
    onnx_path: Path, outdir: Path, precision: str | None = "f32", static_shape: list[int] | None = None
) -> Path:
    """An OpenVINO IR directory as build.openvino lays it out (weights kept FP32), engine.json if `precision`."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if static_shape is not None:
        model.reshape(static_shape)
    outdir.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(outdir / "model.xml"), compress_to_fp16=False)
    if precision is not None:
        engine_info.write(
            ov_info(precision, [i.get_any_name() for i in model.inputs], [o.get_any_name() for o in model.outputs]),
            outdir,
        )
    return outdir


def ov_info(
    precision: str = "f32",
    inputs: tuple[str, ...] = ("input",),
    outputs: tuple[str, ...] = ("logits",),
    device: str = "CPU",
) -> EngineInfo:
    """A minimal OpenVINO EngineInfo (I/O names, inference precision, device), given as engine.json spells it."""
    return EngineInfo.model_validate(
        {
            "backend": "openvino",
            "precision": {"f32": "fp32", "f16": "fp16"}.get(precision, precision),
            "inference_precision": precision,
            "device": {"device": device},
            "toolchain": {"openvino": "test"},
            "inputs": [{"name": n, "dtype": "float32", "dims": ["1..", 3, 8, 8]} for n in inputs],
            "outputs": [{"name": n, "dtype": "float32", "dims": ["1..", 10]} for n in outputs],
            "reproduce": ["python", "-c", "pass"],
        }
    )


MLP_SPEC = {"tensors": {"input": {"shape": ["batch", 4]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 16}}}
CONV_SPEC = {"tensors": {"input": {"shape": ["batch", 3, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 8}}}
