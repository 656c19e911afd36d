"""quantize.qdq called directly: Q/DQ placement TensorRT can use (every Conv/Gemm input behind a
DequantizeLinear, per-channel symmetric weights, zero points 0, residual Adds left fusible), numerics in
ONNX Runtime against FP32, determinism, and the errors; ResNet50 (slow) with its figures printed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from harness import REPO, run_stage
from onnx import TensorProto, helper, numpy_helper

from pipeline.stage import DatasetInput
from stages.data import SYNTHETIC_WARNING
from stages.quantize_qdq import QuantizeQdq, _stride
from stages.runtimes.onnx.check import compare_onnx
from stages.runtimes.onnx.io import random_inputs, session_from_onnx

TINY_SPEC = {"tensors": {"input": {"shape": ["batch", 3, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 8}}}
RESNET50 = {
    "factory": "torchvision.models:resnet50",
    "kwargs": {"weights": None},
    "seed": 0,
    "tensors": {"input": {"shape": ["batch", 3, 224, 224]}},
    "outputs": ["logits"],
    "dims": {"batch": {"min": 1, "opt": 2, "max": 32}},
}


def tiny_resnet(path: Path, channels: int = 8, classes: int = 5) -> Path:
    """conv0-relu -> conv1-relu -> conv2 (+ relu0's output: a residual Add) -> relu -> GAP -> Flatten -> Gemm."""
    rng = np.random.default_rng(0)
    c = channels

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    inits = [
        w("w0", c, 3, 3, 3),
        w("b0", c),
        w("w1", c, c, 3, 3),
        w("b1", c),
        w("w2", c, c, 3, 3),
        w("b2", c),
        w("fc_w", classes, c),
        w("fc_b", classes),
    ]
    pad = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["input", "w0", "b0"], ["c0"], name="conv0", **pad),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", **pad),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", **pad),
        helper.make_node("Add", ["c2", "r0"], ["s"], name="residual"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_resnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=inits,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def resnet50_onnx(root: Path) -> Path:
    """torchvision ResNet50 (random weights, seed 0) exported and simplified, as the recipes do."""
    from stages.export_onnx import ExportOnnx
    from stages.onnx_simplify import OnnxSimplify

    run_stage(ExportOnnx, root / "export", model=RESNET50, recipe_dir=REPO)
    run_stage(OnnxSimplify, root / "simplify", inputs={"model": root / "export" / "model.onnx"}, model=RESNET50)
    return root / "simplify" / "model.onnx"


def synthetic(count: int = 20, seed: int = 1) -> DatasetInput:
    return DatasetInput("calib", {"kind": "synthetic", "count": count, "seed": seed}, Path("."))


def quantize(outdir: Path, model: Path, spec: dict = TINY_SPEC, data: DatasetInput | None = None, **params) -> dict:
    return run_stage(
        QuantizeQdq,
        outdir,
        {"samples": 20, "batch_size": 4, **params},
        inputs={"model": str(model), "data": data or synthetic()},
        model=spec,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_resnet(tmp_path_factory.mktemp("tiny") / "model.onnx")


@pytest.fixture(scope="module")
def tiny_q(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("q")
    quantize(out, tiny)
    return out


def assert_tensorrt_placement(path: Path) -> dict[str, int]:
    """Every Conv/Gemm activation and weight comes from a DequantizeLinear; weights per output channel on axis 0;
    every zero point 0 and int8. Returns counts of the checked nodes."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    weight_of = {}
    for name in ("Conv", "Gemm"):
        for node in (n for n in model.graph.node if n.op_type == name):
            for slot in (0, 1):
                dq = producer.get(node.input[slot])
                assert dq is not None and dq.op_type == "DequantizeLinear", (
                    f"{node.op_type} {node.name} input {slot} ({node.input[slot]}) is not fed by a DequantizeLinear"
                )
            weight_of[node.name] = producer[node.input[1]]
    for name, dq in weight_of.items():
        scale = inits[dq.input[1]]
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        weight = inits.get(dq.input[0])
        if weight is None:  # qdq_pair: float weight -> QuantizeLinear -> DequantizeLinear
            weight = inits[producer[dq.input[0]].input[0]]
        assert axis == 0 and scale.shape == (weight.shape[0],), f"{name}: weight scale {scale.shape} on axis {axis}"
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits[node.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), f"{node.name}: zero point {zp} ({zp.dtype})"
    return {"checked": len(weight_of), "dq": sum(n.op_type == "DequantizeLinear" for n in model.graph.node)}


def test_tiny_cnn_qdq_placement_for_tensorrt(tiny_q: Path) -> None:
    counts = assert_tensorrt_placement(tiny_q / "model.onnx")
    assert counts["checked"] == 4  # three Convs and the Gemm
    model = onnx.load(str(tiny_q / "model.onnx"))
    producer = {o: n for n in model.graph.node for o in n.output}
    add = next(n for n in model.graph.node if n.op_type == "Add")
    # The conv side of the residual stays float (TensorRT fuses conv2 + add), the skip side is quantized.
    assert add.input[0] == "c2" and producer[add.input[1]].op_type == "DequantizeLinear"
    assert not any(
        producer.get(t) is not None and producer[t].op_type == "QuantizeLinear"
        for n in model.graph.node
        for t in n.input
        if n.op_type in ("Conv", "Gemm", "Add")
    )
    assert all(n.op_type != "QuantizeLinear" or n.input[0] != "c2" for n in model.graph.node)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}


def test_report_and_summary(tiny_q: Path, tiny: Path, capsys: pytest.CaptureFixture) -> None:
    report = json.loads((tiny_q / "quantize.json").read_text())
    assert report["synthetic"] is True and report["calibration"]["samples"] == 20
    assert report["warnings"] == [SYNTHETIC_WARNING] and report["warning"] == SYNTHETIC_WARNING  # 20 of 20: not small
    assert report["qdq"]["quantized_ops"] == {"Add": 1, "Conv": 3, "Gemm": 1, "GlobalAveragePool": 1}
    assert report["qdq"]["nonzero_zero_points"] == 0 and report["qdq"]["float_linear_ops"] == []
    assert report["residual_adds_fused"] == 1 and report["preprocess"].startswith("shape inference")
    assert report["check"]["logits"]["cosine"] > 0.999


def test_numerics_in_onnxruntime_against_fp32(tiny_q: Path, tiny: Path) -> None:
    session = session_from_onnx(tiny)
    feeds = random_inputs(session, {"input": (5, 3, 8, 8)}, seed=3)  # a batch size calibration never saw
    figs = compare_onnx(tiny, tiny_q / "model.onnx", feeds)["logits"]
    ref_scale = figs["ref_max_abs"]
    assert figs["cosine"] > 0.999 and figs["max_abs"] < 0.05 * ref_scale, figs


def test_deterministic_bytes_and_qdq_pair_weights(tiny: Path, tiny_q: Path, tmp_path: Path) -> None:
    again = quantize(tmp_path / "again", tiny)
    assert (tmp_path / "again" / "model.onnx").read_bytes() == (tiny_q / "model.onnx").read_bytes()
    assert again["samples"] == 20 and again["synthetic"] is True
    quantize(tmp_path / "pair", tiny, weights="qdq_pair", preprocess=False, calibrate_method="Percentile")
    assert_tensorrt_placement(tmp_path / "pair" / "model.onnx")
    weights = {t.name: t.data_type for t in onnx.load(str(tmp_path / "pair" / "model.onnx")).graph.initializer}
    assert weights["w0"] == TensorProto.FLOAT  # float weight + Q/DQ pair: TensorRT quantizes it


def test_options_excluding_nodes_and_op_types(tiny: Path, tmp_path: Path) -> None:
    summary = quantize(tmp_path / "x", tiny, nodes_to_exclude=["conv1"], op_types=["Conv"], residual_add=False)
    report = json.loads((tmp_path / "x" / "quantize.json").read_text())
    assert report["qdq"]["float_linear_ops"] == ["conv1", "fc"]
    assert report["qdq"]["quantized_ops"] == {"Conv": 2} and summary["residual_adds_fused"] == 0


def test_errors(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no Q/DQ nodes"):
        quantize(tmp_path / "none", tiny, op_types=["LSTM"])
    with pytest.raises(ValueError, match="cosine"):
        quantize(tmp_path / "strict", tiny, check_min_cosine=1.0)
    bad = DatasetInput("calib", {"kind": "synthetic", "count": 4}, Path("."))
    with pytest.raises(ValueError, match="takes"):
        quantize(
            tmp_path / "names",
            tiny,
            spec={"tensors": {"x": {"shape": ["batch", 3, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 8}}},
            data=bad,
        )


def test_stride_divides_the_batch_count() -> None:
    assert _stride(75, 16) == 15 and _stride(7, 16) == 7 and _stride(17, 16) == 1 and _stride(64, 16) == 16


@pytest.mark.slow
def test_resnet50_qdq_placement_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = resnet50_onnx(tmp_path)
    summary = run_stage(
        QuantizeQdq,
        tmp_path / "q",
        {"samples": 32, "batch_size": 4},
        inputs={"model": str(src), "data": synthetic(32)},
        model=RESNET50,
    )
    counts = assert_tensorrt_placement(tmp_path / "q" / "model.onnx")
    assert counts["checked"] == 54 and summary["residual_adds_fused"] == 16  # 53 Convs + the Gemm; 16 blocks
    session = session_from_onnx(src)
    feeds = random_inputs(session, {"input": (2, 3, 224, 224)}, seed=7)
    figs = compare_onnx(src, tmp_path / "q" / "model.onnx", feeds)["logits"]
    with capsys.disabled():
        print(
            f"\nResNet50 QDQ (MinMax, 32 synthetic samples) vs FP32 in ONNX Runtime: max abs {figs['max_abs']:.4f}, "
            f"mean abs {figs['mean_abs']:.4f}, cosine {figs['cosine']:.6f} (logits up to {figs['ref_max_abs']:.1f})"
        )
    assert figs["cosine"] > 0.99


# --- calibration on mixed shapes, and the warnings -----------------------------------------------------------


@pytest.mark.parametrize("method", ["MinMax", "Entropy"])
def test_dynamic_models_calibrate_on_mixed_shapes(tmp_path: Path, method: str) -> None:
    from graphs import ATTENTION_SPEC, FCN_SPEC, MIXED_SOURCE, attention, fcn

    (tmp_path / "mixed_t.py").write_text(MIXED_SOURCE)
    for name, graph, spec, source, count in (
        ("attn", attention(), ATTENTION_SPEC, "sequences", 16),
        ("fcn", fcn(), FCN_SPEC, "images", 10),
    ):
        model = tmp_path / f"{name}.onnx"
        onnx.save(graph, model)
        calib = DatasetInput("calib", {"kind": "python", "python": f"mixed_t.py:{source}"}, tmp_path)
        summary = quantize(
            tmp_path / name, model, spec, data=calib, samples=16, batch_size=4, calib_chunk=2, calibrate_method=method
        )
        assert summary["samples"] == count and summary["quantized_ops"] >= 2 and "warning" not in summary, name
        assert summary["check_cosine"] > 0.9, name  # the check feeds N(0, 1) noise, calibration [0, 1) images
        report = json.loads((tmp_path / name / "quantize.json").read_text())
        assert report["warnings"] == [] and report["calibration"]["samples"] == count


def test_small_and_constant_calibration_sets_warn(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    np.savez(tmp_path / "flat.npz", input=np.full((8, 3, 8, 8), 0.5, np.float32))
    calib = DatasetInput("calib", {"kind": "npz", "path": "flat.npz"}, tmp_path)
    summary = quantize(tmp_path / "q", tiny, data=calib, samples=300, check=False)
    out = capsys.readouterr().out
    assert summary["warnings"] == 2 and summary["samples"] == 8
    assert "WARNING: quantize_qdq: calibrating on only 8 samples of data.calib (subset size 300)" in out
    assert "WARNING: quantize_qdq: input 'input' of data.calib is identical in every sample" in out
    report = json.loads((tmp_path / "q" / "quantize.json").read_text())
    assert len(report["warnings"]) == 2 and report["warning"] == summary["warning"]


def test_empty_calibration_data_is_one_line_naming_the_dataset(tiny: Path, tmp_path: Path) -> None:
    """Not ORT's `No data is collected.` nor `max() arg is an empty sequence`: the dataset, by name."""
    (tmp_path / "d.py").write_text("def none():\n    return iter(())\n")
    empty = DatasetInput("calib", {"kind": "python", "python": "d.py:none"}, tmp_path)
    for batch_size in (1, 4):  # a length taken on trust (1) and one counted by a pass (4)
        with pytest.raises(ValueError, match=r"^data.calib gave no samples$"):
            quantize(tmp_path / f"q{batch_size}", tiny, data=empty, batch_size=batch_size)
    np.savez(tmp_path / "none.npz", input=np.zeros((0, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"^data.calib gave no samples$"):
        quantize(tmp_path / "npz", tiny, data=DatasetInput("calib", {"kind": "npz", "path": "none.npz"}, tmp_path))
