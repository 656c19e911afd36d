"""prune.sparsity called directly, and the 2:4 verifier: the pattern along each op's input dim (Conv along C,
MatMul along K, Gemm by transB, through a Transpose and a DequantizeLinear), ineligible and excluded layers
skipped and reported, the same bytes for the same input, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from graphs import const, model_of, save
from harness import run_stage
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from stages.prune_sparsity import PruneSparsity
from stages.runtimes.onnx import sparsity
from stages.runtimes.onnx.io import random_inputs, run_onnx, session_from_onnx

SPEC = {"tensors": {"x": {"shape": ["batch", 6, 4, 4]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 4}}}


def net() -> onnx.ModelProto:
    """x[b,6,4,4] -Conv conv_in (C=6: ineligible)-> [b,8,4,4] -Conv conv (C=8)-> -Flatten-> [b,128]
    -MatMul mm (B [128,16])-> -Gemm gemm_t (B [12,16], transB 1)-> -Gemm gemm_n (B [12,8], transB 0)->
    -MatMul mm_tr (B = Transpose(wt [4,8]))-> y[b,4]."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w_in"], ["a"], name="conv_in"),
        helper.make_node("Conv", ["a", "w_conv", "b_conv"], ["b"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["b"], ["c"], name="relu"),
        helper.make_node("Flatten", ["c"], ["d"], name="flatten"),
        helper.make_node("MatMul", ["d", "w_mm"], ["e"], name="mm"),
        helper.make_node("Gemm", ["e", "w_gt", "b_gt"], ["f"], name="gemm_t", transB=1),
        helper.make_node("Gemm", ["f", "w_gn"], ["g"], name="gemm_n"),
        helper.make_node("Transpose", ["w_tr"], ["w_tr_t"], name="transpose", perm=[1, 0]),
        helper.make_node("MatMul", ["g", "w_tr_t"], ["y"], name="mm_tr"),
    ]
    inits = [
        const("w_in", rng.standard_normal((8, 6, 1, 1))),
        const("w_conv", rng.standard_normal((8, 8, 3, 3))),
        const("b_conv", rng.standard_normal(8)),
        const("w_mm", rng.standard_normal((128, 16)) * 0.1),
        const("w_gt", rng.standard_normal((12, 16))),
        const("b_gt", rng.standard_normal(12)),
        const("w_gn", rng.standard_normal((12, 8))),
        const("w_tr", rng.standard_normal((4, 8))),
    ]
    return model_of(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )


# the input axis of each weight, in the initializer's own layout
AXES = {"w_conv": 1, "w_mm": 0, "w_gt": 1, "w_gn": 0, "w_tr": 1}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(net(), tmp_path_factory.mktemp("net") / "model.onnx")


def prune(outdir: Path, model: Path, **params) -> dict:
    return run_stage(PruneSparsity, outdir, params, inputs={"model": str(model)}, model=SPEC)


def weights(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def nonzeros_per_group(w: np.ndarray, axis: int) -> np.ndarray:
    """Independent of the module: nonzeros in each group of 4 consecutive entries along `axis`."""
    moved = np.moveaxis(w, axis, -1)
    return (moved.reshape(*moved.shape[:-1], -1, 4) != 0).sum(-1)


def test_pattern_runs_along_each_ops_input_dim(source: Path, tmp_path: Path) -> None:
    summary = prune(tmp_path, source)
    before, after = weights(source), weights(tmp_path / "model.onnx")
    for name, axis in AXES.items():
        w, dense = after[name], before[name]
        assert (nonzeros_per_group(w, axis) == 2).all(), name  # random weights: exactly 2 kept in every group
        # the kept ones are the 2 largest |w| of their group, unchanged
        kept = np.sort(np.abs(np.moveaxis(dense, axis, -1)).reshape(-1, 4), axis=-1)[:, 2:]
        assert np.array_equal(np.sort(np.abs(np.moveaxis(w, axis, -1)).reshape(-1, 4), axis=-1)[:, 2:], kept)
        assert np.array_equal(w[w != 0], dense[w != 0])
        other = next(a for a in range(w.ndim) if a != axis and w.shape[a] % 4 == 0)
        assert not sparsity.is_2_4(w, other), f"{name}: 2:4 along axis {other} too, the test proves nothing"
    assert np.array_equal(after["w_in"], before["w_in"]) and np.array_equal(after["b_gt"], before["b_gt"])
    report = json.loads((tmp_path / "sparsity.json").read_text())
    layers = {e["node"]: e for e in report["layers"]}
    assert layers["conv_in"]["status"] == "skipped"
    assert layers["conv_in"]["reason"] == "input dim 6 (axis 1) is not a multiple of 4"
    assert {n for n, e in layers.items() if e["status"] == "pruned"} == {"conv", "mm", "gemm_t", "gemm_n", "mm_tr"}
    assert layers["mm_tr"]["via"] == ["Transpose"] and layers["mm_tr"]["axis"] == 1
    assert layers["gemm_t"]["zeros"] == 0.5 and layers["conv"]["zeros_before"] == 0.0
    assert layers["conv"]["shape"] == [8, 8, 3, 3] and layers["conv"]["op"] == "Conv"
    assert summary["pruned"] == 5 and summary["skipped"] == 1 and "conv_in (input dim 6" in summary["skipped_layers"]
    assert report["totals"]["pruned_weights"] == 576 + 2048 + 192 + 96 + 32
    # it still runs in ONNX Runtime (the stage's check compared it with the dense model) ...
    assert report["check"]["y"]["finite"] and summary["check_cosine"] < 1.0
    # ... and the verifier, run on any ONNX, agrees
    verdict = {e["node"]: e["status"] for e in sparsity.verify(tmp_path / "model.onnx")}
    assert verdict == {n: "ineligible" if n == "conv_in" else "sparse" for n in layers}
    assert {e["node"]: e["status"] for e in sparsity.verify(source)}["conv"] == "dense"


def test_same_input_same_bytes(source: Path, tmp_path: Path) -> None:
    prune(tmp_path / "a", source)
    prune(tmp_path / "b", source)
    for name in ("model.onnx", "sparsity.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_ties_keep_the_lower_index() -> None:
    w = np.array([[1.0, -1.0, 1.0, 1.0, 0.5, 2.0, -2.0, 0.1]], np.float32)
    assert sparsity.prune_2_4(w, 1).tolist() == [[1.0, -1.0, 0.0, 0.0, 0.0, 2.0, -2.0, 0.0]]


def test_exclude_min_size_and_op_types(source: Path, tmp_path: Path) -> None:
    summary = prune(tmp_path / "e", source, exclude=["gemm_.*"], min_size=100, op_types=["Conv", "Gemm", "MatMul"])
    layers = {e["node"]: e for e in json.loads((tmp_path / "e" / "sparsity.json").read_text())["layers"]}
    assert layers["gemm_t"]["reason"] == "excluded by 'gemm_.*'" and layers["gemm_n"]["status"] == "skipped"
    assert layers["mm_tr"]["reason"] == "32 weights < min_size 100"
    assert {n for n, e in layers.items() if e["status"] == "pruned"} == {"conv", "mm"}
    assert summary["pruned"] == 2
    after = weights(tmp_path / "e" / "model.onnx")
    assert not (after["w_gt"] == 0).any() and not (after["w_tr"] == 0).any()
    only_conv = prune(tmp_path / "c", source, op_types=["Conv"])
    assert only_conv["pruned"] == 1 and (weights(tmp_path / "c" / "model.onnx")["w_mm"] != 0).all()


def test_errors_are_one_line(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"exclude patterns \['gemm'\] match no MatMul/Gemm/Conv node") as err:
        prune(tmp_path / "x", source, exclude=["gemm"])  # names match in full: gemm_t is not gemm
    assert "\n" not in str(err.value)
    with pytest.raises(ValidationError, match="not a regular expression"):
        PruneSparsity.Params.model_validate({"exclude": ["(unclosed"]})
    with pytest.raises(ValidationError, match="op_types is empty"):
        PruneSparsity.Params.model_validate({"op_types": []})
    with pytest.raises(ValidationError):
        PruneSparsity.Params.model_validate({"op_types": ["Add"]})
    relu = model_of(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6, 4, 4])],
        [],
    )
    with pytest.raises(ValueError, match="relu.onnx has no MatMul/Gemm/Conv node: nothing to prune"):
        prune(tmp_path / "r", save(relu, tmp_path / "relu.onnx"))


def test_verifier_rejects_a_weight_that_is_not_2_4(source: Path, tmp_path: Path) -> None:
    model = net()
    sparsity.prune_sites(model, [s for s in sparsity.weight_sites(model) if s.reason is None])
    sparsity.require_2_4(model)  # all eligible weights are 2:4: passes
    w = next(t for t in model.graph.initializer if t.name == "w_gt")
    values = numpy_helper.to_array(w).copy()
    group = values[3, 8:12]
    values[3, 8 + int(np.argmin(np.abs(group) > 0))] = 0.25  # a third nonzero in one group of 4
    w.CopyFrom(numpy_helper.from_array(values, "w_gt"))
    with pytest.raises(ValueError) as err:
        sparsity.require_2_4(model)
    assert str(err.value) == (
        "weight w_gt of Gemm gemm_t (shape [12, 16]) is not 2:4 along axis 1: 1 groups of 4 hold more than 2 nonzeros"
    )
    with pytest.raises(ValueError, match="weight w_in of conv_in cannot be 2:4: input dim 6"):
        sparsity.require_2_4(model, ["w_in"])
    assert not sparsity.is_2_4(np.ones((4, 6)), 1)  # a dim that is not a multiple of 4 never is
    assert sparsity.count_sparse(model) == (4, 6)


def test_weight_that_also_feeds_another_op_is_skipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    model = model_of(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
            helper.make_node("MatMul", ["x", "v"], ["n"], name="mm_own"),
            helper.make_node("ReduceSum", ["w"], ["s"], name="sum", keepdims=0),
            helper.make_node("Add", ["m", "n"], ["mn"], name="add"),
            helper.make_node("Add", ["mn", "s"], ["y"], name="add_s"),
        ],
        "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [const("w", rng.standard_normal((8, 4))), const("v", rng.standard_normal((8, 4)))],
    )
    spec = {"tensors": {"x": {"shape": ["batch", 8]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 4}}}
    run_stage(PruneSparsity, tmp_path, {}, inputs={"model": str(save(model, tmp_path / "in.onnx"))}, model=spec)
    layers = {e["node"]: e for e in json.loads((tmp_path / "sparsity.json").read_text())["layers"]}
    assert layers["mm"]["reason"] == "its weight w also feeds ReduceSum sum"
    assert layers["mm_own"]["status"] == "pruned"


def test_qdq_weights_are_read_and_pruned_through_dequantize_linear(tmp_path: Path) -> None:
    """A Q/DQ weight (quantize.qdq's INT8 ONNX for TensorRT): zero where q equals the zero point."""
    rng = np.random.default_rng(2)
    q = rng.integers(-60, 60, (8, 4)).astype(np.int8)
    q[q == 3] = 4  # no entry starts at the zero point
    model = model_of(
        [
            helper.make_node("DequantizeLinear", ["wq", "scale", "zp"], ["w"], name="dq", axis=1),
            helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(q, "wq"),
            const("scale", [0.1, 0.2, 0.05, 0.3]),
            numpy_helper.from_array(np.full(4, 3, np.int8), "zp"),
        ],
    )
    (entry,) = sparsity.verify(model)
    assert entry["status"] == "dense" and entry["via"] == ["DequantizeLinear"] and entry["axis"] == 0
    (site,) = sparsity.weight_sites(model)
    assert sparsity.prune_sites(model, [site]) == {"wq": 0.5}
    pruned = numpy_helper.to_array(model.graph.initializer[0])
    assert ((pruned == 3).sum(axis=0) == 4).all()  # 2 of each 4 along K (axis 0) at the zero point, per column
    assert (nonzeros_per_group(pruned.astype(np.int64) - 3, 0) == 2).all()
    (entry,) = sparsity.verify(model)
    assert entry["status"] == "sparse" and entry["zeros"] == 0.5
    path = save(model, tmp_path / "qdq.onnx")
    session = session_from_onnx(path, graph_optimization="disable")  # "all" quantizes x on the fly: not exact
    feeds = random_inputs(session, {"x": (2, 8)}, 0)
    dense_w = (q.astype(np.float32) - 3) * np.array([0.1, 0.2, 0.05, 0.3], np.float32)
    mask = pruned != 3
    np.testing.assert_allclose(run_onnx(session, feeds)["y"], feeds["x"] @ (dense_w * mask), rtol=1e-5, atol=1e-5)


def test_verifier_reads_a_float_weight_behind_a_qdq_pair() -> None:
    """quantize.qdq's `weights: qdq_pair`: float weight -> QuantizeLinear -> DequantizeLinear -> Gemm (transB 1)."""
    w = sparsity.prune_2_4(np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32), 1)
    model = model_of(
        [
            helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"], name="q", axis=0),
            helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], name="dq", axis=0),
            helper.make_node("Gemm", ["x", "wd"], ["y"], name="fc", transB=1),
        ],
        "pair",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [const("w", w), const("s", [0.01] * 4), numpy_helper.from_array(np.zeros(4, np.int8), "z")],
    )
    (entry,) = sparsity.verify(model)
    assert entry["status"] == "sparse" and entry["via"] == ["QuantizeLinear", "DequantizeLinear"] and entry["axis"] == 1


def _checked(nodes: list, inits: list, ins: list, outs: list) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", ins, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_a_weight_a_subgraph_reads_from_the_outer_scope_stays_dense() -> None:
    """An If branch that reads W captures it from the outer graph, not through a node input: pruning W for the
    MatMul would change the branch's output too."""
    from stages.prune_sparsity import PruneSparsityParams, _skip_reasons

    vi = helper.make_tensor_value_info
    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    then = helper.make_graph(
        [helper.make_node("Add", ["W", "W"], ["t"])], "then", [], [vi("t", TensorProto.FLOAT, [8, 4])]
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["W"], ["e"])], "else", [], [vi("e", TensorProto.FLOAT, [8, 4])]
    )
    model = _checked(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
            helper.make_node("If", ["c"], ["z"], name="if", then_branch=then, else_branch=other),
        ],
        [numpy_helper.from_array(w, "W")],
        [vi("x", TensorProto.FLOAT, [2, 8]), vi("c", TensorProto.BOOL, [])],
        [vi("y", TensorProto.FLOAT, [2, 4]), vi("z", TensorProto.FLOAT, [8, 4])],
    )
    reasons = _skip_reasons(model, sparsity.weight_sites(model), PruneSparsityParams())
    assert reasons == {"mm": "its weight W also feeds the subgraph of If if"}


def test_one_int8_weight_behind_two_dequantizers_stays_dense() -> None:
    """Two DequantizeLinear nodes with different zero points rank the same int8 weight differently: no one 2:4
    pattern holds for both, so both layers are skipped with the reason (not a failed stage)."""
    from stages.prune_sparsity import PruneSparsityParams, _skip_reasons

    vi = helper.make_tensor_value_info
    rng = np.random.default_rng(1)
    q = rng.integers(0, 255, (8, 8, 1, 1)).astype(np.uint8)
    zero = rng.integers(100, 150, 8).astype(np.uint8)
    inits = [
        numpy_helper.from_array(q, "Wq"),
        numpy_helper.from_array(np.full(8, 0.1, np.float32), "sc"),
        numpy_helper.from_array(zero, "zp"),
        numpy_helper.from_array((zero + 3).astype(np.uint8), "zp2"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["Wq", "sc", "zp"], ["Wd"], axis=0, name="dq"),
        helper.make_node("Conv", ["x", "Wd"], ["y"], name="c"),
        helper.make_node("DequantizeLinear", ["Wq", "sc", "zp2"], ["Wd2"], axis=0, name="dq2"),
        helper.make_node("Conv", ["x", "Wd2"], ["y2"], name="c2"),
    ]
    shape = [1, 8, 4, 4]
    model = _checked(
        nodes,
        inits,
        [vi("x", TensorProto.FLOAT, shape)],
        [vi("y", TensorProto.FLOAT, shape), vi("y2", TensorProto.FLOAT, shape)],
    )
    reasons = _skip_reasons(model, sparsity.weight_sites(model), PruneSparsityParams())
    assert set(reasons) == {"c", "c2"} and all("different DequantizeLinear" in r for r in reasons.values())
