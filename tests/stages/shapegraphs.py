"""Tiny ONNX graphs with dynamic non-batch dims for validate's variable-shape tests (built in code, seeded).

- `sequence_model`: tokens (batch, seq, 4) + attention_mask (batch, seq) -> hidden (batch, seq, 4) and
  logits (batch, 3) (hidden averaged over seq, then a linear head); `pad_garbage` adds 1000 to hidden
  where the mask is 0, `noise` perturbs the head.
- `dense_model`: image (batch, 3, H, W) -> map (batch, 2, H, W), a 3x3 conv and a sigmoid; `gain` 0 makes
  an engine that ignores its input (a constant map), `bias` -3 a sparse heat map.
- `regression_model`: x (batch, 4) -> out (batch, 8) (`width`); `outlier_gain` adds gain * relu(x - 50) @ ones:
  only a sample with a feature above 50 moves, so one sample can be broken while the rest stay exact.
- `token_model`: tokens (batch, seq, 4) + attention_mask -> scores (batch, seq), one score per token;
  `pad_garbage` adds 1000 where the mask is 0.
- `score_model`: x (batch, 4) -> score (batch, 1), a linear score; `bias`, `sign` and `garbage` make candidates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _c(name: str, value: np.ndarray, dtype: type = np.float32) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _model(nodes: list, name: str, inputs: list, outputs: list, inits: list) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=OPSET, producer_name="tests", ir_version=8)


def sequence_model(pad_garbage: bool = False, noise: float = 0.0) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    w, head = rng.standard_normal((4, 4)), rng.standard_normal((4, 3))
    head = head + noise * rng.standard_normal(head.shape)
    nodes = [
        helper.make_node("MatMul", ["tokens", "w"], ["h0"]),
        helper.make_node("Tanh", ["h0"], ["h1"]),
        helper.make_node("ReduceMean", ["h1"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "head"], ["logits"]),
    ]
    if pad_garbage:
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["one", "mf"], ["pad"]),
            helper.make_node("Unsqueeze", ["pad", "axis2"], ["pad3"]),
            helper.make_node("Mul", ["pad3", "big"], ["junk"]),
            helper.make_node("Add", ["h1", "junk"], ["hidden"]),
        ]
    else:
        nodes += [
            helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["mf", "zero"], ["z"]),  # the mask is an input the graph uses
            helper.make_node("Unsqueeze", ["z", "axis2"], ["z3"]),
            helper.make_node("Add", ["h1", "z3"], ["hidden"]),
        ]
    inits = [
        _c("w", w),
        _c("head", head),
        _c("one", 1.0),
        _c("zero", 0.0),
        _c("big", 1000.0),
        _c("axis2", [2], np.int64),
    ]
    return _model(
        nodes,
        "seq",
        [
            helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "seq", 4]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", 4]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
        ],
        inits,
    )


SEQUENCE_SPEC = {
    "tensors": {
        "tokens": {"shape": ["batch", "seq", 4]},
        "attention_mask": {"shape": ["batch", "seq"], "dtype": "int64"},
    },
    "dims": {"batch": {"min": 1, "opt": 2, "max": 4}, "seq": {"min": 4, "opt": 9, "max": 16}},
}


def dense_model(shift: float = 0.0, gain: float = 1.0, bias: float = 0.0) -> onnx.ModelProto:
    rng = np.random.default_rng(8)
    w = rng.standard_normal((2, 3, 3, 3)) * 0.5 * gain
    w[0] += shift
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["pre"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["pre"], ["map"]),
    ]
    return _model(
        nodes,
        "dense",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", 2, "h", "w"])],
        [_c("w", w), _c("b", np.full(2, bias))],
    )


DENSE_SPEC = {
    "tensors": {"image": {"shape": ["batch", 3, "h", "w"]}},
    "dims": {
        "batch": {"min": 1, "opt": 2, "max": 4},
        "h": {"min": 4, "opt": 8, "max": 16},
        "w": {"min": 4, "opt": 8, "max": 16},
    },
}


def regression_model(outlier_gain: float = 0.0, width: int = 8) -> onnx.ModelProto:
    rng = np.random.default_rng(9)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["base"]),
        helper.make_node("Sub", ["x", "fifty"], ["over"]),
        helper.make_node("Relu", ["over"], ["r"]),
        helper.make_node("MatMul", ["r", "gain"], ["bump"]),
        helper.make_node("Add", ["base", "bump"], ["out"]),
    ]
    return _model(
        nodes,
        "reg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", width])],
        [_c("w", rng.standard_normal((4, width))), _c("fifty", 50.0), _c("gain", np.full((4, width), outlier_gain))],
    )


def token_model(pad_garbage: bool = False) -> onnx.ModelProto:
    w = np.random.default_rng(6).standard_normal((4, 1))
    nodes = [
        helper.make_node("MatMul", ["tokens", "w"], ["s3"]),
        helper.make_node("Squeeze", ["s3", "axis2"], ["s"]),
        helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mf"], ["pad"]),
        helper.make_node("Mul", ["pad", "big"], ["junk"]),
        helper.make_node("Add", ["s", "junk"], ["scores"]),
    ]
    return _model(
        nodes,
        "tokens",
        [
            helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "seq", 4]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "seq"])],
        [_c("w", w), _c("axis2", [2], np.int64), _c("one", 1.0), _c("big", 1000.0 if pad_garbage else 0.0)],
    )


def score_model(bias: float = 0.0, sign: float = 1.0, garbage: bool = False) -> onnx.ModelProto:
    """A (batch, 1) score x @ w + bias; `sign` -1 flips it, `garbage` swaps w for unrelated seeded weights."""
    w = np.random.default_rng(3).standard_normal((4, 1))
    if garbage:
        w = np.random.default_rng(4).standard_normal((4, 1))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["score"])]
    return _model(
        nodes,
        "score",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        [_c("w", sign * w), _c("b", [bias])],
    )


REGRESSION_SPEC = {"tensors": {"x": {"shape": ["batch", 4]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 8}}}


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
