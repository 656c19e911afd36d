"""Tiny dynamic-shape ONNX graphs for the quantizer tests: self-attention over a dynamic sequence, and a
fully convolutional net over dynamic height and width. Built with onnx.helper, seeded, no torch."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]
WIDTH = 8


def _w(rng: np.random.Generator, name: str, *shape: int, scale: float = 0.5) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def attention(width: int = WIDTH) -> onnx.ModelProto:
    """x[batch, seq, width] -> one head of self-attention (MatMul -> Div -> Softmax -> MatMul) -> MatMul -> y.

    A sentence encoder in miniature: `y` is per-token, `emb` (its mean over seq) a sentence embedding.
    """
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k_proj"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v_proj"),
        helper.make_node("Transpose", ["k"], ["kt"], name="k_t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="qk"),
        helper.make_node("Div", ["scores", "scale"], ["scaled"], name="scale_div"),
        helper.make_node("Softmax", ["scaled"], ["probs"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["ctx"], name="pv"),
        helper.make_node("MatMul", ["ctx", "wo"], ["o"], name="o_proj"),
        helper.make_node("Add", ["o", "x"], ["y"], name="residual"),
        helper.make_node("ReduceMean", ["y"], ["emb"], name="pool", axes=[1], keepdims=0),
    ]
    inits = [
        _w(rng, "wq", width, width),
        _w(rng, "wk", width, width),
        _w(rng, "wv", width, width),
        _w(rng, "wo", width, width),
        numpy_helper.from_array(np.array(np.sqrt(width), np.float32), "scale"),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", width])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", width])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="tests", ir_version=8)


def fcn(channels: int = 4) -> onnx.ModelProto:
    """x[batch, 3, h, w] -Conv-Relu-Conv-Sigmoid-> mask[batch, 1, h, w]: a dense map at any size."""
    rng = np.random.default_rng(1)
    pad = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", **pad),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", **pad),
        helper.make_node("Sigmoid", ["c1"], ["mask"], name="sigmoid"),
    ]
    inits = [
        _w(rng, "w0", channels, 3, 3, 3),
        _w(rng, "b0", channels),
        _w(rng, "w1", 1, channels, 3, 3),
        _w(rng, "b1", 1),
    ]
    graph = helper.make_graph(
        nodes,
        "fcn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 1, "h", "w"])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="tests", ir_version=8)


ATTENTION_SPEC = {
    "tensors": {"x": {"shape": ["batch", "seq", WIDTH]}},
    "dims": {"batch": {"min": 1, "opt": 4, "max": 16}, "seq": {"min": 2, "opt": 8, "max": 16}},
}
FCN_SPEC = {
    "tensors": {"x": {"shape": ["batch", 3, "h", "w"]}},
    "dims": {
        "batch": {"min": 1, "opt": 2, "max": 8},
        "h": {"min": 4, "opt": 8, "max": 16},
        "w": {"min": 4, "opt": 8, "max": 16},
    },
}

# A python dataset module the tests write next to the recipe: batches of varying shapes.
MIXED_SOURCE = '''
import numpy as np

def sequences(plan=((4, 5), (6, 9), (6, 12)), width=8, seed=0):
    """(count, seq) batches of random token features; sample i is seeded by i."""
    i = 0
    for count, seq in plan:
        yield {"x": np.stack([np.random.default_rng([seed, i + k]).standard_normal((seq, width)).astype(np.float32)
                              for k in range(count)])}
        i += count

def images(plan=((3, 8, 8), (4, 6, 10), (3, 12, 8)), seed=0):
    """(count, h, w) batches of random images in [0, 1)."""
    i = 0
    for count, h, w in plan:
        yield {"x": np.stack([np.random.default_rng([seed, i + k]).random((3, h, w)).astype(np.float32)
                              for k in range(count)])}
        i += count
'''
