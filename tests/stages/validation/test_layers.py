"""Per-layer profiles: OpenVINO's PERF_COUNT records of real compiled models (FP32 and NNCF INT8), ONNX Runtime's
trace of real sessions (FP32 and QDQ), TensorRT's inspector JSON merged with IProfiler times (fixtures: no GPU
here), and what validate writes of them (report.json `layers`, report.md's section), apart from the timed runs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from graphs import classifier, ir_from_onnx, save
from harness import run_stage

from pipeline.stage import DatasetInput
from stages.runtimes import layers as L
from stages.runtimes.layers import LayerProfile, LayerTime
from stages.runtimes.onnxrt.profiling import layer_times as ort_layer_times
from stages.runtimes.onnxrt.profiling import node_precision
from stages.runtimes.onnxrt.runner import OrtRunner
from stages.runtimes.openvino.profiling import exec_precision
from stages.runtimes.openvino.runner import OpenVinoRunner
from stages.runtimes.tensorrt import layers as TL
from stages.validate import Validate
from stages.validation.layers import layers_markdown, summarize

SPEC = {"tensors": {"input": {"shape": ["batch", 3, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 16}}}
X1 = {"input": np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)}


def calibration(n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The classifier as ONNX, an FP32 IR, an NNCF INT8 IR, and an INT8 IR whose MatMul NNCF left in float."""
    os.environ.setdefault("NNCF_CI", "1")
    nncf = pytest.importorskip("nncf")
    import openvino as ov

    root = tmp_path_factory.mktemp("layers")
    onnx_path = save(classifier(), root / "ref" / "model.onnx")
    out = {"onnx": onnx_path, "fp32": ir_from_onnx(onnx_path, root / "fp32")}
    for name, scope in (("int8", None), ("int8_float_fc", nncf.IgnoredScope(types=["MatMul"]))):
        model = ov.Core().read_model(str(onnx_path))
        q = nncf.quantize(
            model, nncf.Dataset(calibration()), subset_size=16, **({"ignored_scope": scope} if scope else {})
        )
        (root / name).mkdir()
        ov.save_model(q, str(root / name / "model.xml"), compress_to_fp16=False)
        out[name] = root / name
    return out


# -- OpenVINO ------------------------------------------------------------------------------------------------------


def test_exec_type_suffix_names_the_precision() -> None:
    assert exec_precision("brgconv_avx512_I8") == "int8" and exec_precision("jit_uni_u8") == "int8"
    assert exec_precision("gemm_mlas_f32") == exec_precision("brgconv_avx512_FP32") == "fp32"
    assert exec_precision("jit_avx512_amx_bf16") == "bf16" and exec_precision("jit_avx512_f16") == "fp16"
    assert exec_precision("undef") == "" and exec_precision("unknown_I64") == "int64"


def test_openvino_fp32_profile_of_a_real_compiled_model(models: dict[str, Path]) -> None:
    runner = OpenVinoRunner(models["fp32"], precision="f32", threads=1)
    profile = runner.profile(X1, runs=5, warmup=1)
    assert profile.backend == "openvino" and profile.runs == 5
    kinds = {layer.type: layer for layer in profile.layers}
    assert {"Convolution", "FullyConnected"} <= set(kinds)
    assert kinds["Convolution"].precision == kinds["FullyConnected"].precision == "fp32"
    assert all(layer.time_ms is not None and layer.time_ms >= 0 for layer in profile.layers)
    assert sum(layer.time_ms or 0 for layer in profile.layers) > 0
    # Parameter/Result and the Relu fused into the convolution are reported NOT_RUN: counted, not listed
    assert profile.skipped >= 2 and "Parameter" not in kinds and "Result" not in kinds
    shares = L.precision_shares(profile.layers)
    assert math.isclose(sum(shares.values()), 1.0) and set(shares) == {"fp32"}
    ranked = L.top(profile.layers, 10)
    assert [r.time_ms for r in ranked] == sorted((r.time_ms for r in ranked), reverse=True)
    assert L.float_after_int8(profile.layers)  # fp32 compute layers, were this engine INT8


def test_openvino_int8_profile_and_the_layers_int8_missed(models: dict[str, Path]) -> None:
    full = OpenVinoRunner(models["int8"], precision="f32", threads=1)
    assert full.precision.startswith("int8")
    layers = full.profile(X1, runs=3, warmup=1).layers
    compute = [layer for layer in layers if L.is_compute(layer.type)]
    assert compute and all(layer.precision == "int8" for layer in compute), compute
    assert L.float_after_int8(layers) == []
    # NNCF told to leave the MatMul alone: its FullyConnected runs in f32 and is named
    partial = OpenVinoRunner(models["int8_float_fc"], precision="f32", threads=1).profile(X1, runs=3, warmup=1)
    missed = L.float_after_int8(partial.layers)
    assert [layer.type for layer in missed] == ["FullyConnected"] and missed[0].precision == "fp32"
    conv = next(layer for layer in partial.layers if layer.type == "Convolution")
    assert conv.precision == "int8"


def test_profiling_compiles_apart_from_the_timed_models(models: dict[str, Path]) -> None:
    runner = OpenVinoRunner(models["fp32"], precision="f32", threads=1)
    runner.benchmark(X1, "latency", min_seconds=0.05, warmup=1)
    runner.profile(X1, runs=2, warmup=0)
    runner.benchmark(X1, "throughput", min_seconds=0.05, warmup=1)
    assert set(runner._compiled) == {"LATENCY", "THROUGHPUT"}  # the profiling model is not kept among them
    for compiled in runner._compiled.values():
        assert str(compiled.get_property("PERF_COUNT")).upper() in ("NO", "FALSE")
    assert "PERF_COUNT" not in json.dumps(runner.describe())


# -- ONNX Runtime --------------------------------------------------------------------------------------------------


def qdq(models: dict[str, Path], path: Path, exclude: list[str]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": x} for x in calibration()])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    quantize_static(str(models["onnx"]), str(path), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=exclude)
    return path


def test_onnxruntime_trace_of_real_sessions(models: dict[str, Path], tmp_path: Path) -> None:
    fp32 = OrtRunner(models["onnx"], threads=1)
    profile = fp32.profile(X1, runs=4, warmup=2)
    assert profile.backend == "onnxruntime" and profile.runs == 4 and profile.wall_ms and profile.wall_ms > 0
    ops = {layer.type: layer for layer in profile.layers}
    assert "Gemm" in ops and any(t in ops for t in ("Conv", "FusedConv"))
    assert all(layer.precision == "fp32" and layer.kernel == "CPUExecutionProvider" for layer in profile.layers)
    assert not fp32.session.get_session_options().enable_profiling  # the timed session never profiles

    int8 = OrtRunner(qdq(models, tmp_path / "q.onnx", []), threads=1)
    ops = {layer.type: layer.precision for layer in int8.profile(X1, runs=2, warmup=1).layers}
    assert ops["QLinearConv"] == "int8" and ops.get("QGemm", ops.get("QLinearMatMul")) == "int8"
    assert int8.precision.startswith("int8")

    gemm = next(n.name for n in onnx.load(str(models["onnx"])).graph.node if n.op_type == "Gemm")
    partial = OrtRunner(qdq(models, tmp_path / "p.onnx", [gemm]), threads=1).profile(X1, runs=2, warmup=1)
    missed = [(layer.type, layer.precision) for layer in L.float_after_int8(partial.layers)]
    # the Gemm left out, and the Conv with it: no QuantizeLinear follows it any more, so ONNX Runtime cannot fuse
    # its DQ -> Conv into a QLinearConv and runs it in float (what this section is for)
    assert ("Gemm", "fp32") in missed and {t for t, _ in missed} <= {"Gemm", "Conv", "FusedConv"}
    assert L.float_after_int8(int8.profile(X1, runs=2, warmup=1).layers) == []


def test_onnxruntime_trace_parsing_keeps_the_last_runs() -> None:
    def node(name: str, op: str, dur: int, types: list[str]) -> dict[str, Any]:
        args = {"op_name": op, "provider": "CPUExecutionProvider", "input_type_shape": [{t: [1]} for t in types]}
        return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "args": args}

    events = []
    for dur in (900, 10, 20, 30):  # the first run is warm-up
        events += [node("q", "QLinearConv", dur, ["uint8"]), node("pool", "MaxPool", 2 * dur, ["uint8"])]
        events += [node("fc", "Gemm", 5, ["float"]), {"cat": "Session", "name": "model_run", "dur": dur + 100}]
    layers, wall = ort_layer_times(events, runs=3)
    assert [(la.name, la.precision, la.time_ms) for la in layers] == [
        ("q", "int8", 0.02),
        ("pool", "int8", 0.04),
        ("fc", "fp32", 0.005),
    ]
    assert wall == 0.12
    assert (
        node_precision("DequantizeLinear", ["uint8"]) == "int8" and node_precision("MatMulNBits", ["float"]) == "int4"
    )
    assert node_precision("Conv", ["float16"]) == "fp16" and node_precision("Shape", []) == ""


# -- TensorRT (inspector JSON fixtures: no GPU needed) ---------------------------------------------------------------

TRT10 = {
    "Layers": [
        {
            "Name": "Reformatting CopyNode for Input Tensor 0 to conv1",
            "LayerType": "Reformat",
            "Inputs": [{"Name": "input", "Format/Datatype": "Row major linear FP32"}],
            "Outputs": [{"Name": "r", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
            "ParameterType": "Reformat",
            "TacticValue": "0x0",
        },
        {
            "Name": "conv1 + relu1",
            "LayerType": "CaskConvolution",
            "Inputs": [{"Name": "r", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
            "Outputs": [{"Name": "c", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
            "ParameterType": "Convolution",
            "TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32",
        },
        {
            "Name": "fc",
            "LayerType": "CaskGemmMatrixMultiply",
            "Inputs": [{"Name": "c", "Format/Datatype": "Row major linear FP32"}],
            "Outputs": [{"Name": "logits", "Format/Datatype": "Row major linear FP32"}],
            "ParameterType": "MatrixMultiply",
            "TacticName": "sm80_xmma_gemm_f32f32_f32f32_f32",
        },
        {"Name": "conv1 + relu1 [profile 1]", "LayerType": "CaskConvolution", "ParameterType": "Convolution"},
        {"Name": "sig", "LayerType": "signal"},
    ],
    "Bindings": ["input", "logits"],
}
TRT11 = {
    "I/O Tensors": [{"Name": "input", "DataType": "Half"}],
    "Layers": [
        {
            "Name": "conv1",
            "LayerType": "CaskConvolution",
            "ParameterType": "Convolution",
            "Inputs": [{"Name": "input", "Format": "Channel major", "DataType": "Half"}],
            "Outputs": [{"Name": "c", "Format": "Channel major", "DataType": "Half"}],
        },
        {
            "Name": "cast",
            "LayerType": "Cast",
            "Inputs": [{"Name": "u", "Format": "Row major linear", "DataType": "UInt8"}],
            "Outputs": [{"Name": "f", "Format": "Row major linear", "DataType": "Float"}],
        },
    ],
}


def test_tensorrt_inspector_and_profiler_times_merge() -> None:
    reported = {
        "Reformatting CopyNode for Input Tensor 0 to conv1": [5.0, 0.01, 0.03, 0.02],
        "conv1 + relu1": [9.0, 0.2, 0.4, 0.3],
        "fc": [1.0, 0.1, 0.1, 0.1],
        "myelin_graph": [0.05, 0.05, 0.05],  # a name the inspector lacks
    }
    layers, notes = TL.layer_times(TRT10, reported, runs=3)
    assert [la.name for la in layers] == [
        "Reformatting CopyNode for Input Tensor 0 to conv1",
        "conv1 + relu1",
        "fc",
        "myelin_graph",
    ]  # profile 1's copy and the signal layer left out; the unknown name kept, last
    reformat, conv, fc, extra = layers
    assert (conv.type, conv.precision, conv.time_ms) == ("Convolution", "int8", 0.3)
    assert conv.kernel.startswith("sm80_xmma_fprop") and reformat.precision == "fp32" and reformat.time_ms == 0.02
    assert (fc.type, fc.precision, fc.time_ms) == ("MatrixMultiply", "fp32", 0.1)
    assert (extra.type, extra.time_ms) == ("", 0.05) and notes == []
    assert [la.name for la in L.float_after_int8(layers)] == ["fc"]  # the Gemm left in FP32
    shares = L.precision_shares(layers)
    assert math.isclose(sum(shares.values()), 1.0) and list(shares)[0] == "int8"


def test_tensorrt_11_names_only_indices_and_no_profiler() -> None:
    layers, notes = TL.layer_times(TRT11, None)
    assert [(la.name, la.type, la.precision, la.time_ms) for la in layers] == [
        ("conv1", "Convolution", "fp16", None),
        ("cast", "Cast", "uint8", None),  # UInt8 is I/O, not INT8 compute
    ]
    assert notes == ["no profiler ran: layer times unknown"] and L.precision_shares(layers) == {}
    # LAYER_NAMES_ONLY: names only; a NONE-verbosity profiler's decimal indices land on the inspector's order
    names_only = {"Layers": ["conv1", "fc"]}
    layers, notes = TL.layer_times(names_only, {"0": [0.5], "1": [0.25]})
    assert [(la.name, la.time_ms, la.type) for la in layers] == [("conv1", 0.5, ""), ("fc", 0.25, "")]
    assert "without detailed profiling verbosity" in notes[0]
    layers, _ = TL.layer_times(TRT10, {"fc": [0.1]})
    assert [la.status for la in layers] == ["not_timed", "not_timed", "executed"]


@pytest.mark.gpu
def test_tensorrt_profile_on_a_gpu(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    from stages.runtimes.tensorrt.probe import cuda_python_available, probe_gpu, unmet_reason

    reason = unmet_reason(probe_gpu(), cuda_python_available())
    if reason:
        pytest.skip(f"needs an NVIDIA GPU and tensorrt: {reason}")
    from stages.build_tensorrt import BuildTensorrt
    from stages.runtimes.tensorrt.runner import TensorRTRunner

    onnx_path = save(classifier(), tmp_path / "m.onnx")
    run_stage(BuildTensorrt, tmp_path / "b", {"tf32": False}, inputs={"model": str(onnx_path)}, model=SPEC)
    runner = TensorRTRunner(tmp_path / "b" / "engine" / "model.engine")
    profile = runner.profile(X1, runs=5, warmup=2)
    assert profile.backend == "tensorrt" and profile.layers
    assert all(la.time_ms is not None for la in profile.layers) and sum(la.time_ms or 0 for la in profile.layers) > 0
    assert getattr(runner.context, "profiler", None) is None  # the timed context never carries the profiler
    runner.close()


# -- the pure helpers ----------------------------------------------------------------------------------------------


def test_compute_layers_shares_and_top() -> None:
    for kind in ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul", "FullyConnected", "Gemm"):
        assert L.is_compute(kind)
    for kind in ("QLinearConv", "FusedConv", "QGemm", "CaskConvolution", "MatrixMultiply", "ConvTranspose"):
        assert L.is_compute(kind)
    for kind in ("Convert", "Reorder", "Eltwise", "Subgraph", "Transpose", "FakeQuantize", "Reformat", ""):
        assert not L.is_compute(kind)
    layers = [
        LayerTime("a", "Convolution", "k", "int8", 1.0),
        LayerTime("b", "MatMul", "k", "bf16", 3.0),
        LayerTime("c", "Eltwise", "k", "fp32", 0.5),
        LayerTime("d", "Convolution", "k", "int8", 3.0),
        LayerTime("e", "Reshape", "k", "", None),
    ]
    assert [la.name for la in L.top(layers, 3)] == ["b", "d", "a"]
    shares = L.precision_shares(layers)
    assert shares == {"int8": 4 / 7.5, "bf16": 3 / 7.5, "fp32": 0.5 / 7.5} and math.isclose(sum(shares.values()), 1)
    assert [la.name for la in L.float_after_int8(layers)] == ["b"]
    assert L.is_int8_engine("int8 (bf16 exec)") and not L.is_int8_engine("f32")

    section = summarize(LayerProfile("openvino", 5, tuple(layers), 2, 9.0), "int8 (f32 exec)", 10.0, "latency p50")
    s = section.summary
    assert (s["sum_ms"], s["model_ms"], s["coverage"], s["skipped"]) == (7.5, 10.0, 0.75, 2)
    assert [r["name"] for r in s["float_after_int8"]] == ["b"] and s["float_after_int8"][0]["share"] == 3 / 7.5
    assert [r["name"] for r in section.layers] == list("abcde") and section.layers[4]["share"] is None
    md = "\n".join(layers_markdown(section.layers, s))
    assert "75% of the whole-model latency" in md and "| 1 | b | MatMul | k | bf16 | 3.0000 | 40.0% |" in md
    assert "### Compute layers that stayed in float after INT8" in md and "- `b` (MatMul, bf16" in md
    fp32 = summarize(LayerProfile("openvino", 5, tuple(layers)), "f32", None, "none").summary
    assert fp32["float_after_int8"] == [] and not fp32["int8"] and fp32["coverage"] is None


# -- validate -------------------------------------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> DatasetInput:
    rng = np.random.default_rng(5)
    np.savez(
        tmp_path / "val.npz",
        input=rng.standard_normal((24, 3, 8, 8)).astype(np.float32),
        labels=rng.integers(0, 10, 24),
    )
    return DatasetInput("val", {"kind": "npz", "path": "val.npz", "labels": "labels"}, tmp_path)


def validate(out: Path, candidate: Path, reference: Path, data: DatasetInput, **params: Any) -> dict[str, Any]:
    quick = {"min_seconds": 0.1, "warmup": 1, "throughput_batches": [4], "profile_runs": 5, "gates": {}}
    inputs = {"candidate": candidate, "reference": reference, "data": data}
    return run_stage(Validate, out, {**quick, **params}, inputs=inputs, model=SPEC)


def test_validate_reports_every_layer_after_the_timed_runs(
    models: dict[str, Path], data: DatasetInput, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    timed: list[Any] = []
    benchmark, profile = OpenVinoRunner.benchmark, OpenVinoRunner.profile

    def spy_benchmark(self: OpenVinoRunner, *a: Any, **k: Any) -> Any:
        calls.append("benchmark")
        result = benchmark(self, *a, **k)
        timed.extend(self._compiled.values())
        return result

    def spy_profile(self: OpenVinoRunner, *a: Any, **k: Any) -> Any:
        calls.append("profile")
        return profile(self, *a, **k)

    monkeypatch.setattr(OpenVinoRunner, "benchmark", spy_benchmark)
    monkeypatch.setattr(OpenVinoRunner, "profile", spy_profile)
    summary = validate(tmp_path / "out", models["int8_float_fc"], models["onnx"], data)
    assert calls == ["benchmark", "benchmark", "profile"]  # latency, throughput b4, then the profile
    assert timed and all(str(c.get_property("PERF_COUNT")).upper() in ("NO", "FALSE") for c in timed)

    r = json.loads((tmp_path / "out" / "report.json").read_text())
    layers, s = r["layers"], r["layer_summary"]
    assert layers and all(set(la) >= {"name", "type", "kernel", "precision", "time_ms", "share"} for la in layers)
    assert math.isclose(sum(la["share"] for la in layers), 1.0)
    latency = next(t for t in r["timing"]["candidate"] if t["mode"] == "latency")
    assert s["model_ms"] == latency["p50_ms"] and s["model_source"] == "latency p50" and s["batch"] == 1
    assert s["input"] == {"input": [1, 3, 8, 8]} and s["coverage"] == pytest.approx(s["sum_ms"] / s["model_ms"])
    assert math.isclose(sum(s["precision_share"].values()), 1.0) and "int8" in s["precision_share"]
    assert s["int8"] and [la["type"] for la in s["float_after_int8"]] == ["FullyConnected"]
    assert summary["float_layers"] == 1 and summary["layers_top"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Layers" in md and "| precision | share of layer time | layers |" in md and "Top " in md
    assert "### Compute layers that stayed in float after INT8" in md
    assert f"- `{s['float_after_int8'][0]['name']}` (FullyConnected, fp32" in md


def test_validate_without_layers_and_without_latency(
    models: dict[str, Path], data: DatasetInput, tmp_path: Path
) -> None:
    validate(tmp_path / "off", models["fp32"], models["onnx"], data, layers=False)
    r = json.loads((tmp_path / "off" / "report.json").read_text())
    assert r["layers"] == [] and r["layer_summary"] == {"note": "per-layer profiling off (layers: false)"}
    assert "_per-layer profiling off (layers: false)_" in (tmp_path / "off" / "report.md").read_text()

    summary = validate(tmp_path / "ort", models["onnx"], models["onnx"], data, latency=False, throughput_batches=[])
    s = json.loads((tmp_path / "ort" / "report.json").read_text())["layer_summary"]
    assert s["backend"] == "onnxruntime" and s["model_source"].startswith("profiled inferences")
    assert s["model_ms"] > 0 and not s["int8"] and "float_layers" not in summary
