"""onnx.simplify called directly: dims stay dynamic, checker passes, options reach onnxsim, self-check bites."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from graphs import CONV_SPEC, conv_bn, save
from harness import run_stage

from stages.onnx_simplify import OnnxSimplify
from stages.runtimes.onnx.io import run_onnx, session_from_onnx

HERE = Path(__file__).resolve().parent


def ops_of(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(path).graph.node)


@pytest.fixture
def conv_model(tmp_path: Path) -> Path:
    return save(conv_bn(), tmp_path / "in" / "model.onnx")


def test_simplify_keeps_batch_dynamic_and_passes_checker(tmp_path: Path, conv_model: Path) -> None:
    summary = run_stage(OnnxSimplify, tmp_path / "out", inputs={"model": conv_model}, model=CONV_SPEC)
    out = tmp_path / "out" / "model.onnx"
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 8, 8]
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert ops_of(out) == Counter({"Conv": 1, "Relu": 1, "Mul": 1})  # BN fused, constant Add folded
    assert summary["nodes_before"] == 5 and summary["nodes_after"] == 3 and summary["check_max_abs"] < 1e-4
    session, reference = session_from_onnx(out), session_from_onnx(conv_model)
    for batch in (1, 7):
        x = {"input": np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)}
        np.testing.assert_allclose(run_onnx(session, x)["out"], run_onnx(reference, x)["out"], atol=1e-4, rtol=1e-4)


def test_simplify_of_an_exported_model(tmp_path: Path) -> None:
    from stages.export_onnx import ExportOnnx

    spec = {
        "factory": "tinymodels.py:tiny_cnn",
        "tensors": {"input": {"shape": ["batch", 3, 16, 16]}},
        "outputs": ["logits"],
        "dims": {"batch": {"min": 1, "opt": 2, "max": 8}},
    }
    run_stage(ExportOnnx, tmp_path / "export", {"dynamo": False}, model=spec, recipe_dir=HERE)
    run_stage(OnnxSimplify, tmp_path / "out", inputs={"model": tmp_path / "export" / "model.onnx"}, model=spec)
    proto = onnx.load(tmp_path / "out" / "model.onnx")
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_skip_fuse_bn_and_no_optimization(tmp_path: Path, conv_model: Path) -> None:
    run_stage(OnnxSimplify, tmp_path / "keep_bn", {"skip_fuse_bn": True}, inputs={"model": conv_model}, model=CONV_SPEC)
    assert ops_of(tmp_path / "keep_bn" / "model.onnx")["BatchNormalization"] == 1
    run_stage(
        OnnxSimplify,
        tmp_path / "fold_only",
        {"perform_optimization": False},
        inputs={"model": conv_model},
        model=CONV_SPEC,
    )
    ops = ops_of(tmp_path / "fold_only" / "model.onnx")
    assert ops["BatchNormalization"] == 1 and ops["Add"] == 0  # constants still folded


def test_output_is_deterministic(tmp_path: Path, conv_model: Path) -> None:
    for name in ("a", "b"):
        run_stage(OnnxSimplify, tmp_path / name, inputs={"model": conv_model}, model=CONV_SPEC)
    assert (tmp_path / "a" / "model.onnx").read_bytes() == (tmp_path / "b" / "model.onnx").read_bytes()


def test_a_wrong_simplification_fails_the_stage(
    tmp_path: Path, conv_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxsim

    real = onnxsim.simplify

    def broken(model, **kwargs):  # a simplifier bug: the folded constant comes out as 4, not 5
        simplified, ok = real(model, **kwargs)
        for init in simplified.graph.initializer:
            if onnx.numpy_helper.to_array(init).tolist() == [5.0]:
                init.CopyFrom(onnx.numpy_helper.from_array(np.array([4.0], np.float32), init.name))
        return simplified, ok

    monkeypatch.setattr(onnxsim, "simplify", broken)
    with pytest.raises(ValueError, match=r"output out: max abs diff .* > atol"):
        run_stage(OnnxSimplify, tmp_path / "out", inputs={"model": conv_model}, model=CONV_SPEC)


def test_losing_a_dynamic_dim_fails_the_stage(
    tmp_path: Path, conv_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxsim

    real = onnxsim.simplify

    def static(model, **kwargs):
        simplified, ok = real(model, **kwargs)
        simplified.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
        return simplified, ok

    monkeypatch.setattr(onnxsim, "simplify", static)
    with pytest.raises(ValueError, match=r"changed the dynamic dims \['batch'\] of input 'input'"):
        run_stage(OnnxSimplify, tmp_path / "out", inputs={"model": conv_model}, model=CONV_SPEC)


def test_params_have_defaults_and_descriptions() -> None:
    params = OnnxSimplify.Params()
    assert params.perform_optimization is True and params.skip_fuse_bn is False
    assert all(f.description for f in OnnxSimplify.Params.model_fields.values())
