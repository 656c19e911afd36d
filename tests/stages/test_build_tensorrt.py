"""build.tensorrt: the plan as pure data (profiles from dims, TensorRT 10 vs 11, two GPUs, the trtexec line),
the key's hardware half, the unmet message, the helpers that need no GPU; and, on a host with an NVIDIA GPU
and tensorrt, real builds checked against ONNX Runtime (skipped elsewhere with what was probed)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from harness import REPO, run_stage
from test_quantize_qdq import RESNET50, TINY_SPEC, resnet50_onnx, synthetic, tiny_resnet

from pipeline.schema import ModelSpec
from pipeline.stage import default_output
from stages.build_tensorrt import BuildTensorrt, BuildTensorrtParams, engine_info
from stages.runtimes import engine_info as info_file
from stages.runtimes.tensorrt import build as trt_build
from stages.runtimes.tensorrt import layers as trt_layers
from stages.runtimes.tensorrt.plan import (
    ShapeRange,
    build_plan,
    profiles_from_model,
    side_cache_root,
    timing_cache_name,
)
from stages.runtimes.tensorrt.probe import GpuProbe, cuda_python_available, parse_smi_csv, probe_gpu, unmet_reason

SPEC = ModelSpec.model_validate(
    {"tensors": {"input": {"shape": ["batch", 3, 224, 224]}}, "dims": {"batch": {"min": 1, "opt": 8, "max": 32}}}
)
TWO = ModelSpec.model_validate(
    {
        "tensors": {"x": {"shape": ["batch", 4]}, "y": {"shape": ["batch", "seq", 5]}, "mask": {"shape": [1, 7]}},
        "dims": {"batch": {"min": 1, "opt": 4, "max": 16}, "seq": {"min": 2, "opt": 8, "max": 8}},
    }
)
A100 = GpuProbe(
    gpu="NVIDIA A100-SXM4-80GB",
    compute_capability="8.0",
    driver="550.54.15",
    cuda="12.4",
    tensorrt="10.13.0.35",
    tensorrt_cuda="12",
    probed=("found /dev/nvidia0",),
)
L4 = dataclasses.replace(A100, gpu="NVIDIA L4", compute_capability="8.9", driver="570.86.15", cuda="12.8")
A100_TRT11 = dataclasses.replace(A100, tensorrt="11.4.0.10", tensorrt_cuda="13", cuda="13.0")
NO_GPU = GpuProbe(probed=("no /dev/nvidia*", "nvidia-smi not found"))


def params(**kw) -> BuildTensorrtParams:
    return BuildTensorrtParams.model_validate(kw)


# -- profiles ------------------------------------------------------------------------------------


def test_profiles_from_dims_dynamic_static_and_overrides() -> None:
    assert profiles_from_model(SPEC) == {"input": ShapeRange((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}
    static = profiles_from_model(SPEC, "static")["input"]
    assert static.static and static.opt == (8, 3, 224, 224)
    over = profiles_from_model(
        SPEC, "dynamic", {"input": {"min": [2, 3, 224, 224], "opt": [4, 3, 224, 224], "max": [4, 3, 224, 224]}}
    )
    assert over["input"] == ShapeRange((2, 3, 224, 224), (4, 3, 224, 224), (4, 3, 224, 224))
    both = profiles_from_model(TWO)
    assert both["y"] == ShapeRange((1, 2, 5), (4, 8, 5), (16, 8, 5)) and both["mask"].static
    assert profiles_from_model(None) == {}
    # Overrides validated through the params model too.
    p = params(profile={"input": {"min": [1, 3, 224, 224], "opt": [1, 3, 224, 224], "max": [2, 3, 224, 224]}})
    assert build_plan(p, SPEC, A100, "m.onnx", "/c").profile()["input"].max == (2, 3, 224, 224)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"image": {"min": [1], "opt": [1], "max": [1]}}, "not in model.tensors"),
        ({"input": {"min": [1, 3, 224], "opt": [1, 3, 224], "max": [1, 3, 224]}}, "rank 3"),
        ({"input": {"min": [4, 3, 224, 224], "opt": [2, 3, 224, 224], "max": [8, 3, 224, 224]}}, "min <= opt <= max"),
        ({"input": {"min": [1, 3, 224], "opt": [1, 3, 224, 224], "max": [1, 3, 224, 224]}}, "differ in rank"),
    ],
)
def test_bad_profile_overrides(override: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        profiles_from_model(SPEC, "dynamic", override)


# -- the plan --------------------------------------------------------------------------------------


def test_plan_for_tensorrt_10_and_11_is_strongly_typed_both_ways(tmp_path: Path) -> None:
    p10 = build_plan(params(), SPEC, A100, "model.onnx", tmp_path)
    p11 = build_plan(params(), SPEC, A100_TRT11, "model.onnx", tmp_path)
    assert p10.strongly_typed and p11.strongly_typed
    assert p10.network_flags == ("STRONGLY_TYPED",) and p11.network_flags == ()  # ignored (deprecated) in 11
    assert "--stronglyTyped" in p10.trtexec and "--stronglyTyped" not in p11.trtexec
    assert not any(f in p10.builder_flags + p11.builder_flags for f in ("FP16", "INT8", "BF16", "FP8"))
    assert p10.tensorrt_major == 10 and p11.tensorrt_major == 11
    assert p10.timing_cache != p11.timing_cache


def test_plans_for_two_gpus_differ_and_are_pure_data(tmp_path: Path) -> None:
    a = build_plan(params(), SPEC, A100, "model.onnx", tmp_path)
    b = build_plan(params(), SPEC, L4, "model.onnx", tmp_path)
    assert a.timing_cache == str(tmp_path / "tensorrt-timing" / "10.13.0.35-nvidia-a100-sxm4-80gb-sm80-cuda12.4.cache")
    assert b.timing_cache == str(tmp_path / "tensorrt-timing" / "10.13.0.35-nvidia-l4-sm89-cuda12.8.cache")
    assert timing_cache_name(A100) != timing_cache_name(L4)
    assert dataclasses.replace(a, timing_cache=b.timing_cache) == b  # nothing else depends on the GPU
    assert a == build_plan(params(), SPEC, A100, "model.onnx", tmp_path) and hash(a) == hash(a)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.builder_optimization_level = 5  # type: ignore[misc]
    json.dumps(a.as_dict())  # plain data all the way down
    assert build_plan(params(timing_cache=False), SPEC, A100, "m.onnx", tmp_path).timing_cache is None


def test_trtexec_line_for_the_installed_version(tmp_path: Path) -> None:
    p = params(
        memory_pool_mb=2048,
        builder_optimization_level=5,
        version_compatible=True,
        exclude_lean_runtime=True,
        hardware_compatibility="ampere+",
        max_aux_streams=0,
        tiling_optimization_level="moderate",
        l2_limit_for_tiling_mb=8,
        avg_timing_iterations=4,
        sparse_weights=True,
        tf32=False,
    )
    plan = build_plan(p, SPEC, A100, "/data/model.onnx", tmp_path)
    cache = str(tmp_path / "tensorrt-timing" / timing_cache_name(A100))
    assert plan.trtexec == [
        "trtexec",
        "--onnx=/data/model.onnx",
        "--saveEngine=model.engine",
        "--stronglyTyped",
        "--minShapes=input:1x3x224x224",
        "--optShapes=input:8x3x224x224",
        "--maxShapes=input:32x3x224x224",
        "--memPoolSize=workspace:2048M",
        "--builderOptimizationLevel=5",
        f"--timingCacheFile={cache}",
        "--versionCompatible",
        "--excludeLeanRuntime",
        "--hardwareCompatibilityLevel=ampere+",
        "--maxAuxStreams=0",
        "--tilingOptimizationLevel=2",
        f"--l2LimitForTiling={8 * 2**20}",
        "--avgTiming=4",
        "--sparsity=enable",
        "--noTF32",
        "--profilingVerbosity=detailed",
        "--skipInference",
    ]
    assert plan.trtexec_line.startswith("trtexec --onnx=/data/model.onnx --saveEngine=model.engine --stronglyTyped ")
    assert plan.builder_flags == ("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "SPARSE_WEIGHTS")
    assert plan.cleared_flags == ("TF32",) and plan.memory_pools == (("WORKSPACE", 2048 * 2**20),)
    assert plan.hardware_compatibility == "AMPERE_PLUS" and plan.tiling_optimization_level == "MODERATE"
    # Defaults: TensorRT's own workspace and optimization level; only dynamic inputs get shapes; names quoted.
    two = build_plan(params(timing_cache=False), TWO, A100_TRT11, "m.onnx", None).trtexec_args(onnx="m.onnx")
    assert "--minShapes=x:1x4,y:1x2x5" in two and "--builderOptimizationLevel=3" in two
    assert not any(a.startswith(("--memPoolSize", "--timingCacheFile", "--stronglyTyped")) for a in two)
    odd = dataclasses.replace(
        build_plan(params(), SPEC, A100, "m.onnx", tmp_path),
        profiles=(("in:0", ShapeRange((1,), (2,), (3,))),),
        dynamic_inputs=("in:0",),
    )
    assert "--optShapes='in:0':2" in odd.trtexec


def test_plan_rejects_what_the_installed_tensorrt_lacks(tmp_path: Path) -> None:
    old = dataclasses.replace(A100, tensorrt="10.5.0.18")
    with pytest.raises(ValueError, match="10.8"):
        build_plan(params(tiling_optimization_level="fast"), SPEC, old, "m.onnx", tmp_path)
    with pytest.raises(ValueError, match=">= 10.0"):
        build_plan(params(), SPEC, dataclasses.replace(A100, tensorrt="8.6.1"), "m.onnx", tmp_path)
    with pytest.raises(ValueError, match="Ampere or newer"):
        build_plan(
            params(hardware_compatibility="ampere+"),
            SPEC,
            dataclasses.replace(A100, gpu="Tesla T4", compute_capability="7.5"),
            "m.onnx",
            tmp_path,
        )
    with pytest.raises(ValueError, match="no TensorRT"):
        build_plan(params(), SPEC, NO_GPU, "m.onnx", tmp_path)
    with pytest.raises(ValueError, match="cannot tell the installed TensorRT version"):
        build_plan(params(), SPEC, dataclasses.replace(A100, tensorrt="unknown"), "m.onnx", tmp_path)
    with pytest.raises(ValueError, match="version_compatible"):
        params(exclude_lean_runtime=True)
    with pytest.raises(ValueError):
        params(strongly_typed=False)  # fixed: precision comes from the ONNX
    with pytest.raises(ValueError):
        params(builder_optimization_level=6)


def test_side_cache_root_from_the_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert side_cache_root(tmp_path / "side") == tmp_path / "side"  # the engine's (ctx.side_cache)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert side_cache_root(None) == tmp_path / "xdg" / "pipeline" / "side"


# -- engine.json from the build's data -------------------------------------------------------------

# What `trt_build.io_tensors` returns for TWO's inputs (profiles for the dynamic ones) and one output.
TWO_IO = [
    {"name": "x", "mode": "input", "dtype": "FLOAT", "shape": [-1, 4], "profile": [[1, 4], [4, 4], [16, 4]]},
    {
        "name": "y",
        "mode": "input",
        "dtype": "HALF",
        "shape": [-1, -1, 5],
        "profile": [[1, 2, 5], [4, 8, 5], [16, 8, 5]],
    },
    {"name": "mask", "mode": "input", "dtype": "INT64", "shape": [1, 7]},
    {"name": "out", "mode": "output", "dtype": "HALF", "shape": [-1, 3]},
]
INT8_LAYERS = {"Layers": [{"Name": "fc", "Inputs": [{"Format/Datatype": "Row major linear Int8 format"}]}]}


def test_engine_info_from_the_plan_the_probe_and_the_build(tmp_path: Path) -> None:
    plan = build_plan(params(memory_pool_mb=512), TWO, A100, "/ws/in/model/model.onnx", tmp_path)
    check = {"opt": {"max_abs": 0.01}}
    info = engine_info(plan, A100, TWO_IO, INT8_LAYERS, "model.onnx", check)
    assert (info.backend, info.precision, info.inference_precision) == ("tensorrt", "int8", None)
    assert (info.device.device, info.device.compute_capability) == ("NVIDIA A100-SXM4-80GB", "8.0")
    assert info.toolchain == {"tensorrt": "10.13.0.35", "tensorrt_cuda": "12", "cuda": "12.4", "driver": "550.54.15"}
    assert info.input_names == ["x", "y", "mask"] and info.output_names == ["out"]
    x, y, mask = info.inputs
    assert (x.dtype, x.dims, x.min, x.opt, x.max) == ("float32", ("1..16", 4), (1, 4), (4, 4), (16, 4))
    assert (y.dtype, y.dims) == ("float16", ("1..16", "2..8", 5)) and y.opt == (4, 8, 5)
    assert (mask.dtype, mask.dims, mask.min) == ("int64", (1, 7), None) and not mask.dynamic
    assert info.outputs[0].dims == ("?", 3)  # TensorRT states no range for an output's dynamic dim
    # reproduce: trtexec on the input's file name, as the plan would run it (the workspace path is not recorded).
    assert info.reproduce == tuple(plan.trtexec_args(onnx="model.onnx", layer_info="layers.json"))
    assert info.reproduce[:3] == ("trtexec", "--onnx=model.onnx", "--saveEngine=model.engine")
    assert "--memPoolSize=workspace:512M" in info.reproduce and "/ws/in" not in info.reproduce_line
    # Everything the untyped sidecar held is still there.
    d = info.details
    assert d["strongly_typed"] is True and d["layers"] == INT8_LAYERS and d["check"] == check
    assert d["profiles"]["y"] == {"min": [1, 2, 5], "opt": [4, 8, 5], "max": [16, 8, 5]}
    assert d["settings"]["builder_optimization_level"] == 3 and d["settings"]["memory_pools"] == {
        "WORKSPACE": 512 * 2**20
    }
    assert not {"onnx_path", "timing_cache", "profiles"} & set(d["settings"])
    assert info_file.read(info_file.write(info, tmp_path)) == info  # and it round-trips as written
    assert "check" not in engine_info(plan, A100, TWO_IO, {"Layers": ["fc"]}, "model.onnx").details
    assert engine_info(plan, A100, TWO_IO, {"Layers": ["fc"]}, "model.onnx").precision == "fp32"


def test_engine_info_names_types_numpy_lacks_and_refuses_unknown_ones(tmp_path: Path) -> None:
    plan = build_plan(params(), SPEC, A100_TRT11, "model.onnx", tmp_path)
    io = [
        {"name": "input", "mode": "input", "dtype": "BF16", "shape": [2, 3, 224, 224]},
        {"name": "logits", "mode": "output", "dtype": "FP8", "shape": [2, 1000]},
    ]
    info = engine_info(plan, A100_TRT11, io, {}, "model.onnx")
    assert [t.dtype for t in (*info.inputs, *info.outputs)] == ["bfloat16", "float8_e4m3fn"]
    with pytest.raises(ValueError, match="'input' has TensorRT type INT2, which engine.json cannot name"):
        engine_info(plan, A100_TRT11, [{**io[0], "dtype": "INT2"}], {}, "model.onnx")


def test_the_runner_checks_the_sidecar_against_the_engine_without_tensorrt() -> None:
    from stages.runtimes.tensorrt.runner import built_for, check_io

    info = engine_info(build_plan(params(), TWO, L4, "m.onnx", None), L4, TWO_IO, INT8_LAYERS, "m.onnx")
    assert built_for(info) == "built for NVIDIA L4 (sm 8.9) with TensorRT 10.13.0.35"
    check_io(info, "model.engine", ["mask", "x", "y"], ["out"])  # order aside, the same tensors
    with pytest.raises(
        ValueError,
        match=r"model.engine: its engine.json lists inputs \['x', 'y', 'mask'\] and "
        r"outputs \['out'\], the engine has \['input'\] and \['logits'\]",
    ):
        check_io(info, "model.engine", ["input"], ["logits"])


# -- the kind: outputs, key, availability ----------------------------------------------------------


def test_outputs_default_to_the_engine() -> None:
    """One directory, as build.openvino's: the engine and its engine.json travel together to validate."""
    (out,) = BuildTensorrt.outputs.values()
    assert default_output(BuildTensorrt) == "model" and out.path == "engine" and out.is_dir and BuildTensorrt.exclusive


def test_toolchain_and_key_hold_tensorrt_and_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pipeline.cache.hashing import DigestMemo
    from pipeline.keys.compute import KeyContextImpl, compute_key, explain

    node = SimpleNamespace(kind=BuildTensorrt, params=params())
    recipe = SimpleNamespace(model=SPEC)
    keys = KeyContextImpl(DigestMemo(None), tmp_path)
    results = {}
    for name, probe in (("a100", A100), ("l4", L4), ("trt11", A100_TRT11)):
        monkeypatch.setattr("stages.runtimes.tensorrt.probe.probe_gpu", lambda probe=probe: probe)
        results[name] = compute_key(node, recipe, {"model": "0" * 64}, {}, BuildTensorrt(), keys)
    tc = results["a100"].components["toolchain"]
    assert tc == {
        "tensorrt": "10.13.0.35",
        "tensorrt_cuda": "12",
        "gpu": "NVIDIA A100-SXM4-80GB",
        "compute_capability": "8.0",
        "cuda": "12.4",
    }
    assert len({r.key for r in results.values()}) == 3
    why = explain(results["a100"].components, results["l4"].components)
    assert "gpu NVIDIA A100-SXM4-80GB -> NVIDIA L4" in why and "compute_capability 8.0 -> 8.9" in why
    assert "tensorrt 10.13.0.35 -> 11.4.0.10" in explain(results["a100"].components, results["trt11"].components)
    monkeypatch.setattr("stages.runtimes.tensorrt.probe.probe_gpu", lambda: NO_GPU)
    assert BuildTensorrt().hardware(params())["gpu"] == "none" and BuildTensorrt().toolchain() == {}


def test_unmet_messages_name_what_was_probed() -> None:
    assert unmet_reason(NO_GPU) == (
        "needs an NVIDIA GPU (probed: no /dev/nvidia*, nvidia-smi not found); "
        "needs tensorrt: pip install '.[tensorrt]' (on a host that reaches NVIDIA's "
        "package index)"
    )
    no_trt = dataclasses.replace(A100, tensorrt=None)
    assert unmet_reason(no_trt) == (
        "needs tensorrt: pip install '.[tensorrt]' (on a host that reaches NVIDIA's package index)"
    )
    assert unmet_reason(A100) is None
    assert "cuda-python" in unmet_reason(A100, cuda_python=False)


def test_unmet_on_this_machine() -> None:
    probe = probe_gpu()
    if probe.has_gpu:
        pytest.skip(f"this host has a GPU ({probe.gpu})")
    message = BuildTensorrt().unmet()
    assert message is not None and message.startswith("needs an NVIDIA GPU (probed: ")
    assert all(entry in message for entry in probe.probed)
    assert probe_gpu() is probe  # probed once per process


def test_runner_is_unavailable_here_with_the_reason(tmp_path: Path) -> None:
    from stages.runtimes.base import RunnerUnavailable
    from stages.runtimes.tensorrt.runner import runner_from_engine

    reason = unmet_reason(probe_gpu(), cuda_python_available())
    if reason is None:
        pytest.skip("this host can run TensorRT engines")
    (tmp_path / "model.engine").write_bytes(b"not an engine")
    with pytest.raises(RunnerUnavailable, match="TensorRT runner: needs"):
        runner_from_engine(tmp_path / "model.engine")


def test_parse_nvidia_smi_csv() -> None:
    text = "NVIDIA A100-SXM4-80GB, 8.0, 550.54.15\nTesla K80, [N/A], 470.1\n\n"
    assert parse_smi_csv(text) == [("NVIDIA A100-SXM4-80GB", "8.0", "550.54.15"), ("Tesla K80", "", "470.1")]


# -- helpers of the build that need no GPU ---------------------------------------------------------


class FakeParserError:
    def __init__(self, node: int, name: str, op: str, desc: str) -> None:
        self._v = (node, name, op, desc)

    def code(self) -> SimpleNamespace:
        return SimpleNamespace(name="UNSUPPORTED_NODE")

    def node(self) -> int:
        return self._v[0]

    def node_name(self) -> str:
        return self._v[1]

    def node_operator(self) -> str:
        return self._v[2]

    def desc(self) -> str:
        return self._v[3]


def test_parser_errors_name_index_node_and_op() -> None:
    text = trt_build.parser_errors(
        [
            FakeParserError(12, "Conv_3", "Conv", "unsupported auto_pad"),
            FakeParserError(-1, "", "", "model has no graph"),
        ]
    )
    assert text.splitlines() == [
        "ONNX parser: node 12 (Conv_3, Conv): unsupported auto_pad [UNSUPPORTED_NODE]",
        "ONNX parser:: model has no graph [UNSUPPORTED_NODE]",
    ]


def test_precision_from_inspector_json_of_tensorrt_10_and_11() -> None:
    trt10 = {
        "Layers": [
            {
                "Name": "conv1",
                "Inputs": [{"Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
            }
        ]
    }
    trt11 = {"Layers": [{"Name": "conv1", "Outputs": [{"Format": "Channel major", "DataType": "Half"}]}]}
    fp32 = {"Layers": [{"Name": "fc", "Inputs": [{"Format/Datatype": "Row major linear FP32"}], "LayerType": "gemm"}]}
    assert trt_layers.precision_from_layers(trt10) == "int8"
    assert trt_layers.precision_from_layers(trt11) == "fp16"
    assert trt_layers.precision_from_layers(fp32) == "fp32"
    # UINT8 I/O is not INT8 compute; TensorRT 11's "I/O Tensors" list is not read; BF16 either spelling.
    uint8 = {
        "Layers": [
            {
                "Name": "cast",
                "Inputs": [{"Format/Datatype": "Row major linear UInt8 format"}],
                "Outputs": [{"Format/Datatype": "Row major linear FP32"}],
            }
        ]
    }
    io_only = {
        "I/O Tensors": [{"Name": "x", "DataType": "Half"}],
        "Layers": [{"Name": "fc", "Outputs": [{"Format": "Row major linear", "DataType": "Float"}]}],
    }
    bf16 = {"Layers": [{"Name": "mm", "Outputs": [{"Format": "Row major linear", "DataType": "BFloat16"}]}]}
    assert trt_layers.precision_from_layers(uint8) == "fp32"
    assert trt_layers.precision_from_layers(io_only) == "fp32"
    assert trt_layers.precision_from_layers(bf16) == "bf16"
    assert trt_layers.precision_from_layers({"Layers": ["conv1", "fc"]}) == "fp32"  # LAYER_NAMES_ONLY


def test_cuda_python_result_unpacking() -> None:
    """cuda-python calls return `(cudaError_t, values...)`; cudaSuccess is 0."""
    import enum

    from stages.runtimes.tensorrt.runner import _handle, _ok

    class Err(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

    assert _ok((Err.cudaSuccess,)) is None
    assert _ok((Err.cudaSuccess, 1234)) == 1234
    assert _ok((Err.cudaSuccess, 1, 2)) == (1, 2)
    with pytest.raises(RuntimeError, match="cudaErrorMemoryAllocation"):
        _ok((Err.cudaErrorMemoryAllocation, 0))

    class Handle:  # a handle type cuda.bindings.utils does not know (or no cuda-python): int() is used
        def __int__(self) -> int:
            return 0xBEEF

    assert _handle(Handle()) == 0xBEEF


class FakeCache:
    def __init__(self, entries: list[str]) -> None:
        self.entries = set(entries)

    def combine(self, other: "FakeCache", ignore_mismatch: bool) -> bool:
        self.entries |= other.entries
        return True

    def serialize(self) -> bytes:
        return ",".join(sorted(self.entries)).encode()

    def queryKeys(self) -> list[str]:
        return sorted(self.entries)


class FakeConfig:
    def create_timing_cache(self, blob: bytes) -> FakeCache:
        return FakeCache(blob.decode().split(",") if blob else [])


def test_timing_cache_is_merged_under_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "side" / "tensorrt-timing" / "x.cache"
    path.parent.mkdir(parents=True)
    assert trt_build.save_timing_cache(FakeConfig(), FakeCache(["a", "b"]), path) == {
        "bytes_after": 3,
        "entries_saved": 2,
    }
    # Another build finished meanwhile with different entries: they are kept, ours are added.
    stats = trt_build.save_timing_cache(FakeConfig(), FakeCache(["b", "c"]), path)
    assert path.read_bytes() == b"a,b,c" and stats["entries_saved"] == 3
    assert (tmp_path / "side" / "tensorrt-timing" / "x.cache.lock").exists()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".timing-")]


def test_runner_dtypes_come_from_the_table_without_tensorrt() -> None:
    from stages.runtimes.tensorrt.runner import _np_dtype

    assert _np_dtype(SimpleNamespace(name="HALF"), "x") == np.float16
    assert _np_dtype(SimpleNamespace(name="INT64"), "ids") == np.int64
    with pytest.raises(ValueError, match="'y' is BF16, which numpy cannot hold"):
        _np_dtype(SimpleNamespace(name="BF16"), "y")


def test_kind_modules_import_cheaply() -> None:
    code = (
        "import sys; import stages.build_tensorrt, stages.quantize_qdq, stages.onnx_fp16, "
        "stages.runtimes.tensorrt.plan, stages.runtimes.tensorrt.build, stages.runtimes.tensorrt.runner, "
        "stages.runtimes.tensorrt.probe, stages.runtimes.tensorrt.layers, stages.runtimes.tensorrt.streams, "
        "stages.runtimes.tensorrt.lanes, stages.runtimes.tensorrt.cudart, stages.runtimes.onnx.qdq, "
        "stages.runtimes.onnx.check, stages.runtimes.runners, stages.runtimes.onnxrt.runner, "
        "stages.runtimes.openvino.runner, stages.runtimes.measure, stages.runtimes.dtypes, stages.runtimes.base; "
        "heavy = {'torch', 'onnx', 'onnxruntime', 'tensorrt', 'openvino', 'nncf', 'onnxconverter_common', "
        "'cuda'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- on a GPU with tensorrt ------------------------------------------------------------------------

PROBE = probe_gpu()
UNMET = unmet_reason(PROBE, cuda_python_available())
gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(
    UNMET is not None,
    reason=f"needs an NVIDIA GPU and tensorrt: probed {', '.join(PROBE.probed)}; "
    f"tensorrt {PROBE.tensorrt or 'not installed'}",
)


@pytest.fixture
def side_cache(tmp_path: Path) -> Path:
    return tmp_path / "side"  # run_stage's side cache for outputs under tmp_path


@gpu
@needs_gpu
def test_tiny_engine_runs_and_matches_onnxruntime(tmp_path: Path, side_cache: Path) -> None:
    import numpy as np

    from stages.runtimes.onnx.io import random_inputs, run_onnx, session_from_onnx
    from stages.runtimes.tensorrt.runner import TensorRTRunner

    src = tiny_resnet(tmp_path / "tiny.onnx")
    summary = run_stage(BuildTensorrt, tmp_path / "b", {"tf32": False}, inputs={"model": str(src)}, model=TINY_SPEC)
    assert set(summary["check"]) == {"min", "opt", "max"} and summary["precision"] == "fp32"
    assert all(point["cosine"] > 0.9999 for point in summary["check"].values())
    info = info_file.read(tmp_path / "b" / "engine" / "engine.json")
    assert info.device.device == PROBE.gpu and info.toolchain["tensorrt"] == PROBE.tensorrt
    assert info.details["strongly_typed"] and info.precision == summary["precision"] == "fp32"
    assert info.details["profiles"]["input"] == {"min": [1, 3, 8, 8], "opt": [2, 3, 8, 8], "max": [8, 3, 8, 8]}
    assert (info.inputs[0].min, info.inputs[0].max, info.inputs[0].dtype) == ((1, 3, 8, 8), (8, 3, 8, 8), "float32")
    assert info.reproduce[:3] == ("trtexec", "--onnx=tiny.onnx", "--saveEngine=model.engine")
    assert info.details["layers"] and info.details["check"] == summary["check"]
    assert Path(summary["timing_cache"]["path"]).parent == side_cache / "tensorrt-timing"

    from stages.runtimes.runners import runner_for

    chosen = runner_for(tmp_path / "b" / "engine")  # the build's directory: engine.json says tensorrt
    assert isinstance(chosen, TensorRTRunner) and chosen.info == info and chosen.precision == "fp32 (tensorrt)"
    chosen.close()
    runner = TensorRTRunner(tmp_path / "b" / "engine" / "model.engine")
    session = session_from_onnx(src)
    feeds = random_inputs(session, {"input": (5, 3, 8, 8)}, seed=2)
    got, want = runner.infer(feeds), run_onnx(session, feeds)
    assert np.abs(got["logits"] - want["logits"]).max() < 1e-3 * max(1.0, float(np.abs(want["logits"]).max()))
    assert runner.input_names == ["input"] and runner.output_names == ["logits"]
    timing = runner.benchmark(feeds, "latency", min_seconds=0.2, warmup=2)
    assert timing.iterations > 0 and timing.p50_ms > 0 and timing.batch == 5
    assert runner.benchmark(feeds, "throughput", min_seconds=0.2, warmup=2).throughput > 0
    with pytest.raises(ValueError, match="outside the engine's profile"):
        runner.infer(random_inputs(session, {"input": (9, 3, 8, 8)}, seed=2))
    runner.close()


@gpu
@needs_gpu
def test_second_build_adds_no_timing_cache_entries(tmp_path: Path, side_cache: Path) -> None:
    src = tiny_resnet(tmp_path / "tiny.onnx")
    first = run_stage(BuildTensorrt, tmp_path / "1", {"check": False}, inputs={"model": str(src)}, model=TINY_SPEC)
    second = run_stage(BuildTensorrt, tmp_path / "2", {"check": False}, inputs={"model": str(src)}, model=TINY_SPEC)
    a, b = first["timing_cache"], second["timing_cache"]
    assert a["path"] == b["path"] and a["bytes_after"] > 0 and b["bytes_before"] == a["bytes_after"]
    assert b["bytes_after"] == b["bytes_before"]  # nothing new was timed
    if b["entries_before"] is not None:  # ITimingCache.queryKeys, where the bindings have it
        assert b["entries_after"] == b["entries_before"] == a["entries_after"] > 0


@gpu
@needs_gpu
def test_parser_error_names_the_node(tmp_path: Path, side_cache: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["input"], ["out"], name="fancy", domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match=r"ONNX parser: node 0 \(fancy, FancyOp\)"):
        run_stage(
            BuildTensorrt,
            tmp_path / "b",
            {"check": False},
            inputs={"model": str(tmp_path / "bad.onnx")},
            model={"tensors": {"input": {"shape": [1, 4]}}},
        )


@gpu
@pytest.mark.slow
@needs_gpu
def test_resnet50_int8_and_fp16_engines_against_onnxruntime(
    tmp_path: Path, side_cache: Path, capsys: pytest.CaptureFixture
) -> None:
    from stages.onnx_fp16 import OnnxFp16
    from stages.quantize_qdq import QuantizeQdq
    from stages.runtimes.onnx.check import figures
    from stages.runtimes.onnx.io import random_inputs, run_onnx, session_from_onnx
    from stages.runtimes.tensorrt.runner import TensorRTRunner

    src = resnet50_onnx(tmp_path)
    run_stage(
        QuantizeQdq,
        tmp_path / "q",
        {"samples": 64, "batch_size": 8},
        inputs={"model": str(src), "data": synthetic(64)},
        model=RESNET50,
    )
    run_stage(OnnxFp16, tmp_path / "h", inputs={"model": str(src)}, model=RESNET50)
    session = session_from_onnx(src)
    feeds = random_inputs(session, {"input": (8, 3, 224, 224)}, seed=11)
    want = run_onnx(session, feeds)["logits"]
    gates = {"q": ("int8", 0.99), "h": ("fp16", 0.9999)}
    for name, (precision, min_cosine) in gates.items():
        summary = run_stage(
            BuildTensorrt, tmp_path / f"e{name}", inputs={"model": str(tmp_path / name / "model.onnx")}, model=RESNET50
        )
        assert summary["precision"] == precision
        runner = TensorRTRunner(tmp_path / f"e{name}" / "engine" / "model.engine")
        assert runner.precision == f"{precision} (tensorrt)"
        figs = figures(want, runner.infer(feeds)["logits"])
        runner.close()
        with capsys.disabled():
            print(
                f"\nResNet50 {precision} engine on {PROBE.gpu} vs FP32 ONNX Runtime: max abs {figs['max_abs']:.4f}, "
                f"cosine {figs['cosine']:.6f}"
            )
        assert figs["finite"] and figs["cosine"] >= min_cosine
