"""ONNX graphs built in code for the stage tests (onnx.helper, seeded, no torch), and an OpenVINO IR made from one.

Each builder returns a ModelProto whose structure the tests know exactly (which nodes are dangling, foldable,
removable, what the outputs are called), with a model spec (`*_SPEC`) to run it under:

- `mlp` (dangling and foldable nodes) and `conv_bn` (a foldable BatchNorm): simplify and surgery.
- `classifier`: a tiny image classifier whose top-1 varies per sample (runners, validate); `ir_from_onnx`
  converts a file to an OpenVINO IR with its engine.json (`ov_info`).
- `attention` (dynamic sequence) and `fcn` (dynamic height and width): the quantizers; MIXED_SOURCE is a python
  dataset module of batches of varying shapes for them.
- `sequence_model`, `dense_model`, `regression_model`, `token_model`, `score_model`: validate's
  variable-shape, padding and role tests:
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

from stages.runtimes import engine_info
from stages.runtimes.engine_info import EngineInfo

OPSET = [helper.make_opsetid("", 17)]


def const(name: str, value: np.ndarray | float | list, dtype: type = np.float32) -> TensorProto:
    """An initializer `name` holding `value` as `dtype`."""
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def model_of(nodes: list, name: str, inputs: list, outputs: list, inits: list) -> onnx.ModelProto:
    """The model of one graph, at opset 17 and IR version 8 (what every runtime here reads)."""
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=OPSET, producer_name="tests", ir_version=8)


def save(model: onnx.ModelProto, path: Path, check: bool = True) -> Path:
    """`model` written to `path` (its folder made), checked first unless it is wrong on purpose (`check=False`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _image_spec(tensor: str, max_batch: int) -> dict:
    """A (batch, 3, h, w) input whose height and width run from 4 to 16 (opt 8)."""
    return {
        "tensors": {tensor: {"shape": ["batch", 3, "h", "w"]}},
        "dims": {
            "batch": {"min": 1, "opt": 2, "max": max_batch},
            "h": {"min": 4, "opt": 8, "max": 16},
            "w": {"min": 4, "opt": 8, "max": 16},
        },
    }


# -- simplify and surgery ----------------------------------------------------------------------------------------
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
    return model_of(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [
            const("w", rng.standard_normal((4, 3))),
            const("c1", rng.standard_normal(3)),
            const("c2", rng.standard_normal(3)),
        ],
    )


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
        const("cw", rng.standard_normal((4, 3, 3, 3))),
        const("cb", rng.standard_normal(4)),
        const("scale", rng.uniform(0.5, 1.5, 4)),
        const("shift", rng.standard_normal(4)),
        const("mean", rng.standard_normal(4)),
        const("var", rng.uniform(0.5, 1.5, 4)),
        const("two", np.array([2.0])),
        const("three", np.array([3.0])),
    ]
    return model_of(
        nodes,
        "conv_bn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        inits,
    )


# -- a classifier, and an OpenVINO IR made from a file ---------------------------------------------------------
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
    return model_of(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )


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


# -- dynamic shapes for the quantizers ---------------------------------------------------------------------------
WIDTH = 8


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
        const("wq", rng.standard_normal((width, width)) * 0.5),
        const("wk", rng.standard_normal((width, width)) * 0.5),
        const("wv", rng.standard_normal((width, width)) * 0.5),
        const("wo", rng.standard_normal((width, width)) * 0.5),
        numpy_helper.from_array(np.array(np.sqrt(width), np.float32), "scale"),
    ]
    return model_of(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", width])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", width])],
        inits,
    )


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
        const("w0", rng.standard_normal((channels, 3, 3, 3)) * 0.5),
        const("b0", rng.standard_normal((channels,)) * 0.5),
        const("w1", rng.standard_normal((1, channels, 3, 3)) * 0.5),
        const("b1", rng.standard_normal((1,)) * 0.5),
    ]
    return model_of(
        nodes,
        "fcn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 1, "h", "w"])],
        inits,
    )


ATTENTION_SPEC = {
    "tensors": {"x": {"shape": ["batch", "seq", WIDTH]}},
    "dims": {"batch": {"min": 1, "opt": 4, "max": 16}, "seq": {"min": 2, "opt": 8, "max": 16}},
}
FCN_SPEC = _image_spec("x", max_batch=8)

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


# -- variable shapes, padding and roles for validate ---------------------------------------------------------
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
        const("w", w),
        const("head", head),
        const("one", 1.0),
        const("zero", 0.0),
        const("big", 1000.0),
        const("axis2", [2], np.int64),
    ]
    return model_of(
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
    return model_of(
        nodes,
        "dense",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["batch", 2, "h", "w"])],
        [const("w", w), const("b", np.full(2, bias))],
    )


DENSE_SPEC = _image_spec("image", max_batch=4)


def regression_model(outlier_gain: float = 0.0, width: int = 8) -> onnx.ModelProto:
    rng = np.random.default_rng(9)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["base"]),
        helper.make_node("Sub", ["x", "fifty"], ["over"]),
        helper.make_node("Relu", ["over"], ["r"]),
        helper.make_node("MatMul", ["r", "gain"], ["bump"]),
        helper.make_node("Add", ["base", "bump"], ["out"]),
    ]
    return model_of(
        nodes,
        "reg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", width])],
        [
            const("w", rng.standard_normal((4, width))),
            const("fifty", 50.0),
            const("gain", np.full((4, width), outlier_gain)),
        ],
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
    return model_of(
        nodes,
        "tokens",
        [
            helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "seq", 4]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "seq"])],
        [const("w", w), const("axis2", [2], np.int64), const("one", 1.0), const("big", 1000.0 if pad_garbage else 0.0)],
    )


def score_model(bias: float = 0.0, sign: float = 1.0, garbage: bool = False) -> onnx.ModelProto:
    """A (batch, 1) score x @ w + bias; `sign` -1 flips it, `garbage` swaps w for unrelated seeded weights."""
    w = np.random.default_rng(3).standard_normal((4, 1))
    if garbage:
        w = np.random.default_rng(4).standard_normal((4, 1))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["score"])]
    return model_of(
        nodes,
        "score",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        [const("w", sign * w), const("b", [bias])],
    )


REGRESSION_SPEC = {"tensors": {"x": {"shape": ["batch", 4]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 8}}}


def gelu_mlp(gain: float = 100.0, width: int = 16, hidden: int = 64) -> onnx.ModelProto:
    """x (batch, width) -> fc1 -> GELU -> fc2 -> embedding, where two GELU channels carry activations `gain` times
    the others' (the outliers real encoders have after GELU) and fc2 reads them at 1/`gain`: the float function is
    ordinary, but per-tensor INT8 on fc2's input crushes every other channel; fc2 kept in float mends it."""
    rng = np.random.default_rng(5)
    w1 = rng.standard_normal((width, hidden)) / 4
    w1[:, :2] *= gain
    w2 = rng.standard_normal((hidden, width)) / 8
    w2[:2] /= gain
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Gelu", ["h"], ["g"], name="gelu"),
        helper.make_node("MatMul", ["g", "w2"], ["embedding"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "gelu_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", width])],
        initializer=[const("w1", w1), const("w2", w2)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], producer_name="tests", ir_version=9)


GELU_SPEC = {
    "tensors": {"x": {"shape": ["batch", 16]}},
    "dims": {"batch": {"min": 1, "opt": 8, "max": 32}},
    "roles": {"embedding": "embedding"},
}
