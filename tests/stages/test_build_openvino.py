"""build.openvino called directly: agrees with ONNX Runtime, weights modes, dynamic/static shapes, engine.json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_stage
from onnxgraphs import CONV_SPEC, conv_bn, save
from pydantic import ValidationError

from stages._onnxio import run_onnx, session_from_onnx
from stages.build_openvino import BuildOpenvino

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(conv_bn(), tmp_path_factory.mktemp("onnx") / "model.onnx")


def build(outdir: Path, source: Path, **params) -> tuple[dict, dict]:
    summary = run_stage(BuildOpenvino, outdir, params, inputs={"model": str(source)}, model=CONV_SPEC)
    return summary, json.loads((outdir / "model" / "engine.json").read_text())


def engine(outdir: Path) -> "ov.CompiledModel":
    """Compile an engine the way a runner would: the precision engine.json records."""
    info = json.loads((outdir / "model" / "engine.json").read_text())
    return ov.Core().compile_model(str(outdir / "model" / "model.xml"), info["device"],
                                   {"INFERENCE_PRECISION_HINT": info["inference_precision"]})


def x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype(np.float32)


def test_fp32_engine_agrees_with_onnxruntime_at_every_batch(tmp_path: Path, onnx_model: Path) -> None:
    summary, info = build(tmp_path / "b", onnx_model, inference_precision="f32")
    assert sorted(p.name for p in (tmp_path / "b" / "model").iterdir()) == ["engine.json", "model.bin", "model.xml"]
    assert summary["checked"] == {"min": {"out": [1, 4, 8, 8]}, "opt": {"out": [2, 4, 8, 8]},
                                  "max": {"out": [8, 4, 8, 8]}}
    compiled, session = engine(tmp_path / "b"), session_from_onnx(onnx_model)
    for batch in (1, 5, 8):
        got = compiled({"input": x(batch, batch)})["out"]
        np.testing.assert_allclose(got, run_onnx(session, {"input": x(batch, batch)})["out"], atol=1e-5, rtol=1e-5)
    assert info["inputs"] == {"input": {"shape": "[1..8,3,8,8]", "dtype": "f32"}}
    assert info["outputs"] == {"out": {"shape": "[1..8,4,8,8]", "dtype": "f32"}}
    assert (info["inference_precision"], info["device"], info["weights"], info["shapes"], info["performance_hint"]) == \
        ("f32", "CPU", "as_is", "dynamic", "LATENCY")
    assert info["input_names"] == ["input"] and info["output_names"] == ["out"]
    assert info["openvino"] == ov.get_version() and "built_on" not in info  # machine-independent bytes
    assert summary["built_on"]
    assert info["int8_ops"] == 0 and info["fp16_weight_constants"] == 0


def test_bf16_precision_is_applied_and_moves_the_numbers(tmp_path: Path, onnx_model: Path) -> None:
    build(tmp_path / "bf16", onnx_model, inference_precision="bf16")
    got = engine(tmp_path / "bf16")({"input": x(4)})["out"]
    reference = run_onnx(session_from_onnx(onnx_model), {"input": x(4)})["out"]
    assert np.abs(got - reference).max() > 1e-4  # why the recipe must choose: bf16 is not f32


def test_fp16_weights_are_smaller_and_close(tmp_path: Path, onnx_model: Path) -> None:
    build(tmp_path / "fp32", onnx_model, inference_precision="f32")
    _, info = build(tmp_path / "fp16", onnx_model, inference_precision="f32", weights="fp16")
    size32 = (tmp_path / "fp32" / "model" / "model.bin").stat().st_size
    size16 = (tmp_path / "fp16" / "model" / "model.bin").stat().st_size
    assert size16 < 0.6 * size32 and info["fp16_weight_constants"] > 0 and info["weights"] == "fp16"
    got = engine(tmp_path / "fp16")({"input": x(3)})["out"]
    np.testing.assert_allclose(got, run_onnx(session_from_onnx(onnx_model), {"input": x(3)})["out"],
                               atol=1e-2, rtol=3e-3)
    with pytest.raises(ValueError, match=r"weights: fp32, but the input holds \d+ FP16-compressed weight constants"):
        build(tmp_path / "back", tmp_path / "fp16" / "model", inference_precision="f32", weights="fp32")


def test_static_shapes_fix_opt_and_reject_other_batches(tmp_path: Path, onnx_model: Path) -> None:
    summary, info = build(tmp_path / "s", onnx_model, inference_precision="f32", shapes="static",
                          performance_hint="THROUGHPUT")
    assert info["inputs"]["input"]["shape"] == "[2,3,8,8]" and info["performance_hint"] == "THROUGHPUT"
    assert list(summary["checked"]) == ["opt"]
    compiled = engine(tmp_path / "s")
    assert compiled({"input": x(2)})["out"].shape == (2, 4, 8, 8)
    with pytest.raises(RuntimeError):
        compiled({"input": x(3)})


def test_dynamic_engine_rejects_batches_outside_the_range(tmp_path: Path, onnx_model: Path) -> None:
    build(tmp_path / "d", onnx_model, inference_precision="f32")
    with pytest.raises(RuntimeError):
        engine(tmp_path / "d")({"input": x(9)})


def test_ir_input_and_deterministic_bytes(tmp_path: Path, onnx_model: Path) -> None:
    build(tmp_path / "a", onnx_model, inference_precision="f32")
    build(tmp_path / "b", onnx_model, inference_precision="f32")
    for name in ("model.xml", "model.bin", "engine.json"):
        assert (tmp_path / "a" / "model" / name).read_bytes() == (tmp_path / "b" / "model" / name).read_bytes()
    _, info = build(tmp_path / "from_ir", tmp_path / "a" / "model", inference_precision="f32", weights="fp32")
    assert info["inputs"]["input"]["shape"] == "[1..8,3,8,8]"


def test_inference_precision_is_required() -> None:
    with pytest.raises(ValidationError, match="inference_precision"):
        BuildOpenvino.Params.model_validate({})
    with pytest.raises(ValidationError):
        BuildOpenvino.Params.model_validate({"inference_precision": "fp32"})
    assert all(f.description for f in BuildOpenvino.Params.model_fields.values())
    assert BuildOpenvino.Params(inference_precision="f32").weights == "as_is"


def test_f16_on_a_cpu_without_it_fails_rather_than_run_bf16(tmp_path: Path, onnx_model: Path) -> None:
    if "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU runs f16 natively")
    with pytest.raises(ValueError, match=r"compiled the engine with inference precision \w+, not the requested f16"):
        build(tmp_path / "f16", onnx_model, inference_precision="f16")


def test_recipe_and_model_inputs_must_match(tmp_path: Path, onnx_model: Path) -> None:
    spec = {"tensors": {"image": {"shape": ["batch", 3, 8, 8]}}, "dims": CONV_SPEC["dims"]}
    with pytest.raises(ValueError, match=r"do not match model.tensors \['image'\] \(not in the model: \['image'\]\)"):
        run_stage(BuildOpenvino, tmp_path / "o", {"inference_precision": "f32"}, inputs={"model": onnx_model}, model=spec)
    with pytest.raises(ValueError, match=r"device 'GPU' is not available here"):
        build(tmp_path / "g", onnx_model, inference_precision="f32", device="GPU")
    with pytest.raises(ValueError, match=r"not an OpenVINO IR directory: no model.xml"):
        build(tmp_path / "e", tmp_path, inference_precision="f32")
