"""build.openvino called directly: agrees with ONNX Runtime, weights modes, dynamic/static shapes, engine.json
(a typed EngineInfo whose `reproduce` command rebuilds the IR)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from graphs import CONV_SPEC, conv_bn, save
from harness import run_stage
from pydantic import ValidationError

from stages.build_openvino import BuildOpenvino
from stages.runtimes import engine_info
from stages.runtimes.engine_info import EngineInfo
from stages.runtimes.onnx.io import run_onnx, session_from_onnx

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(conv_bn(), tmp_path_factory.mktemp("onnx") / "model.onnx")


def build(outdir: Path, source: Path, **params) -> tuple[dict, EngineInfo]:
    summary = run_stage(BuildOpenvino, outdir, params, inputs={"model": str(source)}, model=CONV_SPEC)
    return summary, engine_info.read(outdir / "model")


def engine(outdir: Path) -> "ov.CompiledModel":
    """Compile an engine the way a runner would: the device and precision engine.json records."""
    info = engine_info.read(outdir / "model")
    return ov.Core().compile_model(
        str(outdir / "model" / "model.xml"), info.device.device, {"INFERENCE_PRECISION_HINT": info.inference_precision}
    )


def x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype(np.float32)


def test_fp32_engine_agrees_with_onnxruntime_at_every_batch(tmp_path: Path, onnx_model: Path) -> None:
    summary, info = build(tmp_path / "b", onnx_model, inference_precision="f32")
    assert sorted(p.name for p in (tmp_path / "b" / "model").iterdir()) == ["engine.json", "model.bin", "model.xml"]
    assert summary["checked"] == {
        "min": {"out": [1, 4, 8, 8]},
        "opt": {"out": [2, 4, 8, 8]},
        "max": {"out": [8, 4, 8, 8]},
    }
    compiled, session = engine(tmp_path / "b"), session_from_onnx(onnx_model)
    for batch in (1, 5, 8):
        got = compiled({"input": x(batch, batch)})["out"]
        np.testing.assert_allclose(got, run_onnx(session, {"input": x(batch, batch)})["out"], atol=1e-5, rtol=1e-5)
    assert [t.model_dump() for t in info.inputs] == [
        {"name": "input", "dtype": "float32", "dims": ("1..8", 3, 8, 8), "min": None, "opt": None, "max": None}
    ]
    assert info.outputs[0].name == "out" and info.outputs[0].dims == ("1..8", 4, 8, 8) and info.outputs[0].dynamic
    assert (info.backend, info.precision, info.inference_precision, info.device.device) == (
        "openvino",
        "fp32",
        "f32",
        "CPU",
    )
    assert info.device.compute_capability is None and info.schema_version == engine_info.SCHEMA
    d = info.details
    assert (d["weights"], d["shapes"], d["performance_hint"]) == ("as_is", "dynamic", "LATENCY")
    assert d["benchmark_app"] == [
        "benchmark_app",
        "-m",
        "model.xml",
        "-d",
        "CPU",
        "-hint",
        "latency",
        "-infer_precision",
        "f32",
        "-data_shape",
        "input[2,3,8,8]",
    ]
    assert info.input_names == ["input"] and info.output_names == ["out"]
    assert info.toolchain == {"openvino": ov.get_version()}  # and no CPU model: machine-independent bytes
    assert "built_on" not in info.details and summary["built_on"] and summary["precision"] == "fp32"
    assert d["int8_ops"] == 0 and d["fp16_weight_constants"] == 0


def test_the_reproduce_command_rebuilds_the_ir(tmp_path: Path, onnx_model: Path) -> None:
    """engine.json's `reproduce` (a python call, relative to the input's directory) writes an IR of the same
    shapes and outputs."""
    _, info = build(tmp_path / "b", onnx_model, inference_precision="f32", weights="fp16")
    assert info.reproduce[:2] == ("python", "-c") and "read_model('model.onnx')" in info.reproduce[2]
    assert "compress_to_fp16=True" in info.reproduce_line
    work = tmp_path / "again"
    work.mkdir()
    (work / "model.onnx").write_bytes(onnx_model.read_bytes())
    subprocess.run([sys.executable, *info.reproduce[1:]], cwd=work, check=True, timeout=120)
    again = ov.Core().read_model(str(work / "model.xml"))
    assert [str(i.get_partial_shape()) for i in again.inputs] == ["[1..8,3,8,8]"]
    built = ov.Core().compile_model(
        str(tmp_path / "b" / "model" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    rebuilt = ov.Core().compile_model(again, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_array_equal(rebuilt({"input": x(3)})[0], built({"input": x(3)})[0])


def _cpu_runs_bf16() -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_bf16_is_unavailable_exactly_where_openvino_cannot_run_it(monkeypatch: pytest.MonkeyPatch) -> None:
    params = BuildOpenvino.Params(inference_precision="bf16")
    unmet = BuildOpenvino().unmet(params)
    assert (unmet is None) == _cpu_runs_bf16()  # the CPU flags read here agree with OpenVINO's own probe
    assert BuildOpenvino().unmet(BuildOpenvino.Params(inference_precision="f32")) is None
    from stages.runtimes import cpu

    monkeypatch.setattr(cpu, "cpu_identity", lambda: {"cpu": "x", "cpu_flags": "avx2 avx512f", "cpus": "2"})
    assert BuildOpenvino().unmet(params) == (
        "inference_precision bf16 needs a CPU with AVX512_BF16 or AMX (this one has none); choose f32"
    )
    monkeypatch.setattr(cpu, "cpu_identity", lambda: {"cpu": "x", "cpu_flags": "avx512f amx_bf16", "cpus": "2"})
    assert BuildOpenvino().unmet(params) is None


def test_bf16_on_a_cpu_without_it_fails_rather_than_run_f32(tmp_path: Path, onnx_model: Path) -> None:
    if _cpu_runs_bf16():
        pytest.skip("this CPU runs bf16")
    with pytest.raises(ValueError, match=r"not the requested bf16 \(this device lacks it\); choose f32$"):
        build(tmp_path / "bf16", onnx_model, inference_precision="bf16")


def test_bf16_precision_is_applied_and_moves_the_numbers(tmp_path: Path, onnx_model: Path) -> None:
    if not _cpu_runs_bf16():
        pytest.skip("this CPU has no bf16 (AVX512_BF16 or AMX): OpenVINO runs f32 and the stage refuses")
    _, info = build(tmp_path / "bf16", onnx_model, inference_precision="bf16")
    assert (info.precision, info.inference_precision) == ("bf16", "bf16")
    got = engine(tmp_path / "bf16")({"input": x(4)})["out"]
    reference = run_onnx(session_from_onnx(onnx_model), {"input": x(4)})["out"]
    assert np.abs(got - reference).max() > 1e-4  # why the recipe must choose: bf16 is not f32


def test_fp16_weights_are_smaller_and_close(tmp_path: Path, onnx_model: Path) -> None:
    build(tmp_path / "fp32", onnx_model, inference_precision="f32")
    _, info = build(tmp_path / "fp16", onnx_model, inference_precision="f32", weights="fp16")
    size32 = (tmp_path / "fp32" / "model" / "model.bin").stat().st_size
    size16 = (tmp_path / "fp16" / "model" / "model.bin").stat().st_size
    assert size16 < 0.6 * size32 and info.details["fp16_weight_constants"] > 0 and info.details["weights"] == "fp16"
    assert info.precision == "fp32"  # FP16 weights, decompressed: the engine computes in its inference precision
    got = engine(tmp_path / "fp16")({"input": x(3)})["out"]
    np.testing.assert_allclose(
        got, run_onnx(session_from_onnx(onnx_model), {"input": x(3)})["out"], atol=1e-2, rtol=3e-3
    )
    with pytest.raises(ValueError, match=r"weights: fp32, but the input holds \d+ FP16-compressed weight constants"):
        build(tmp_path / "back", tmp_path / "fp16" / "model", inference_precision="f32", weights="fp32")


def test_static_shapes_fix_opt_and_reject_other_batches(tmp_path: Path, onnx_model: Path) -> None:
    summary, info = build(
        tmp_path / "s", onnx_model, inference_precision="f32", shapes="static", performance_hint="THROUGHPUT"
    )
    assert info.inputs[0].dims == (2, 3, 8, 8) and not info.inputs[0].dynamic
    assert info.details["performance_hint"] == "THROUGHPUT" and "-data_shape" not in info.details["benchmark_app"]
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
    assert info.inputs[0].dims == ("1..8", 3, 8, 8)
    assert "read_model('model/model.xml')" in info.reproduce[2]  # the IR directory input, by its name


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
        run_stage(
            BuildOpenvino, tmp_path / "o", {"inference_precision": "f32"}, inputs={"model": onnx_model}, model=spec
        )
    with pytest.raises(ValueError, match=r"device 'GPU' is not available here"):
        build(tmp_path / "g", onnx_model, inference_precision="f32", device="GPU")
    with pytest.raises(ValueError, match=r"not an OpenVINO IR directory: no model.xml"):
        build(tmp_path / "e", tmp_path, inference_precision="f32")


def test_a_fake_quantized_ir_is_an_int8_engine(tmp_path: Path) -> None:
    """An IR holding FakeQuantize (what quantize.nncf writes) is recorded as int8, computing the rest in its
    inference precision."""
    from openvino import opset13 as ops

    param = ops.parameter([-1, 3, 8, 8], ov.Type.f32, name="input")
    low, high = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
    fq = ops.fake_quantize(param, low, high, low, high, 256)
    weights = ops.constant(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32))
    conv = ops.convolution(fq, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    conv.output(0).get_tensor().set_names({"out"})
    model = ov.Model([conv], [param], "fq")
    model.inputs[0].get_tensor().set_names({"input"})
    (tmp_path / "ir").mkdir()
    ov.save_model(model, str(tmp_path / "ir" / "model.xml"), compress_to_fp16=False)
    summary, info = build(tmp_path / "b", tmp_path / "ir", inference_precision="f32")
    assert (info.precision, info.inference_precision) == ("int8", "f32") and summary["precision"] == "int8"
    assert info.details["fake_quantize"] == info.details["int8_ops"] == 1 and info.details["fake_convert"] == 0
