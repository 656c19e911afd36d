"""onnx.fp16 called directly: FP16 weights with FP32 I/O, ops and nodes kept in FP32 on request, clamped
constants counted, numerics in ONNX Runtime against FP32; ResNet50 (slow) with its figures printed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from harness import run_stage
from onnx import TensorProto, numpy_helper
from test_quantize_qdq import RESNET50, TINY_SPEC, resnet50_onnx, tiny_resnet

from stages.onnx_fp16 import OnnxFp16
from stages.runtimes.onnx.check import compare_onnx
from stages.runtimes.onnx.io import random_inputs, session_from_onnx


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_resnet(tmp_path_factory.mktemp("tiny") / "model.onnx")


def fp16(outdir: Path, model: Path, spec: dict = TINY_SPEC, **params) -> dict:
    return run_stage(OnnxFp16, outdir, params, inputs={"model": str(model)}, model=spec)


def test_fp16_weights_fp32_io_and_numerics(tiny: Path, tmp_path: Path) -> None:
    summary = fp16(tmp_path / "h", tiny)
    model = onnx.load(str(tmp_path / "h" / "model.onnx"))
    assert {t.data_type for t in model.graph.initializer} == {TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # keep_io_types
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert summary["fp16_initializers"] == 8 and summary["casts"] == 2 and summary["clamped_values"] == 0
    session = session_from_onnx(tiny)
    feeds = random_inputs(session, {"input": (3, 3, 8, 8)}, seed=4)
    figs = compare_onnx(tiny, tmp_path / "h" / "model.onnx", feeds)["logits"]
    assert figs["cosine"] > 0.9999 and figs["max_abs"] < 1e-2 * max(1.0, figs["ref_max_abs"]), figs
    report = json.loads((tmp_path / "h" / "fp16.json").read_text())
    assert "Resize" in report["op_block_list"] and report["check"]["logits"]["finite"]
    # The same input gives the same bytes (early cutoff downstream).
    fp16(tmp_path / "again", tiny)
    assert (tmp_path / "again" / "model.onnx").read_bytes() == (tmp_path / "h" / "model.onnx").read_bytes()


def test_keep_nodes_and_op_types_in_fp32(tiny: Path, tmp_path: Path) -> None:
    summary = fp16(tmp_path / "k", tiny, keep_nodes=["conv1"], keep_op_types=["Gemm"], keep_io_types=False)
    model = onnx.load(str(tmp_path / "k" / "model.onnx"))
    inits = {t.name: t.data_type for t in model.graph.initializer}
    assert (
        inits["w1"] == TensorProto.FLOAT and inits["fc_w"] == TensorProto.FLOAT and inits["w0"] == TensorProto.FLOAT16
    )
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    report = json.loads((tmp_path / "k" / "fp16.json").read_text())
    assert report["kept_fp32_nodes"] == ["conv1", "fc"] and summary["kept_fp32_nodes"] == 2


def test_out_of_range_constants_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tiny_resnet(tmp_path / "big" / "model.onnx")
    model = onnx.load(str(path))
    for t in model.graph.initializer:
        if t.name == "b0":
            a = numpy_helper.to_array(t).copy()
            a[:2] = [1e6, 1e-9]
            t.CopyFrom(numpy_helper.from_array(a.astype(np.float32), "b0"))
    onnx.save(model, path)
    summary = fp16(tmp_path / "out", path, check=False)
    assert summary["clamped_values"] == 2 and "clamped to +-65504" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "fp16.json").read_text())
    assert report["clamped"] == {"too_large": 1, "too_small": 1, "tensors": ["b0"]}


def test_errors(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nodes the model does not have"):
        fp16(tmp_path / "e1", tiny, keep_nodes=["nope"])
    with pytest.raises(ValueError, match="min_positive_val"):
        OnnxFp16.Params.model_validate({"min_positive_val": 1.0, "max_finite_val": 0.5})
    with pytest.raises(ValueError, match="cosine"):
        fp16(tmp_path / "e2", tiny, check_min_cosine=1.0)


@pytest.mark.slow
def test_resnet50_fp16_figures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = resnet50_onnx(tmp_path)
    summary = run_stage(OnnxFp16, tmp_path / "h", inputs={"model": str(src)}, model=RESNET50)
    assert summary["fp16_initializers"] > 50 and summary["size_mb"] < 60
    session = session_from_onnx(src)
    feeds = random_inputs(session, {"input": (2, 3, 224, 224)}, seed=7)
    figs = compare_onnx(src, tmp_path / "h" / "model.onnx", feeds)["logits"]
    with capsys.disabled():
        print(
            f"\nResNet50 FP16 (keep_io_types) vs FP32 in ONNX Runtime: max abs {figs['max_abs']:.4f}, "
            f"mean abs {figs['mean_abs']:.4f}, cosine {figs['cosine']:.6f} (logits up to {figs['ref_max_abs']:.1f})"
        )
    assert figs["cosine"] > 0.9999 and figs["max_abs"] < 0.5
