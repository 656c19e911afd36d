"""Runners: ONNX Runtime and OpenVINO on a tiny classifier; runner choice; timing and its noise meter;
the runner modules' import graph (no cycles, one runtime per runner).

Never asserts on speed: only that timings are well-formed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from graphs import classifier, ir_from_onnx, ov_info, save
from onnx import TensorProto, helper, numpy_helper

from stages.runtimes import cpu, engine_info, measure, runners
from stages.runtimes.base import Runner, RunnerUnavailable
from stages.runtimes.engine_info import EngineDevice, EngineInfo, TensorInfo
from stages.runtimes.onnxrt.runner import OrtRunner
from stages.runtimes.openvino.runner import OpenVinoRunner


def trt_info(inputs: tuple[str, ...] = ("input",), outputs: tuple[str, ...] = ("logits",)) -> EngineInfo:
    """A TensorRT EngineInfo as build.tensorrt writes it (fields only: no engine behind it)."""
    return EngineInfo(
        backend="tensorrt",
        precision="int8",
        device=EngineDevice(device="NVIDIA L4", compute_capability="8.9"),
        toolchain={"tensorrt": "10.13.0.35"},
        reproduce=["trtexec", "--onnx=model.onnx"],
        inputs=[
            TensorInfo(
                name=n, dtype="float32", dims=["1..8", 3, 8, 8], min=[1, 3, 8, 8], opt=[4, 3, 8, 8], max=[8, 3, 8, 8]
            )
            for n in inputs
        ],
        outputs=[TensorInfo(name=n, dtype="float32", dims=["?", 10]) for n in outputs],
    )


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    onnx_path = save(classifier(), tmp_path / "ref" / "model.onnx")
    return onnx_path, ir_from_onnx(onnx_path, tmp_path / "ir")


def feeds(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype(np.float32)}


def test_openvino_f32_agrees_with_onnxruntime(tiny: tuple[Path, Path]) -> None:
    onnx_path, ir = tiny
    ort_runner, ov_runner = runners.runner_for(onnx_path), runners.runner_for(ir)
    assert isinstance(ort_runner, OrtRunner) and isinstance(ov_runner, OpenVinoRunner)
    assert isinstance(ort_runner, Runner) and isinstance(ov_runner, Runner)
    assert ort_runner.precision == "fp32 (onnxruntime)" and ov_runner.precision == "f32"
    assert ort_runner.input_names == ov_runner.input_names == ["input"]
    assert ov_runner.output_names == ["logits"]
    for batch in (1, 5):  # the IR keeps the batch dynamic
        x = feeds(batch, batch)
        a, b = ort_runner.infer(x)["logits"], ov_runner.infer(x)["logits"]
        assert a.shape == b.shape == (batch, 10)
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)


def test_openvino_precision_comes_from_engine_json_unless_overridden(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    onnx_path, _ = tiny
    bf16 = OpenVinoRunner(ir_from_onnx(onnx_path, tmp_path / "bf16", "bf16"))
    assert bf16.requested_precision == "bf16"
    # the execution precision is what the device chose: bf16 where the CPU has it, else f32
    cpu_bf16 = "avx512_bf16" in cpu.cpu_identity()["cpu_flags"] or "amx_bf16" in cpu.cpu_identity()["cpu_flags"]
    assert bf16.precision == ("bf16" if cpu_bf16 else "f32")
    assert OpenVinoRunner(tmp_path / "bf16", precision="f32").precision == "f32"
    bare = OpenVinoRunner(ir_from_onnx(onnx_path, tmp_path / "bare", None))  # no engine.json: f32, explicitly
    assert bare.requested_precision == "f32" and bare.describe()["latency"]["INFERENCE_PRECISION_HINT"]
    with pytest.raises(ValueError, match="expected one of f32, bf16, f16"):
        OpenVinoRunner(tmp_path / "bare", precision="int8")


def test_runner_for_chooses_by_artifact_type(tmp_path: Path) -> None:
    """Without engine.json: the file type decides."""
    (tmp_path / "trt").mkdir()
    plan = tmp_path / "trt" / "model.engine"
    plan.write_bytes(b"\0")
    for artifact in (plan, plan.parent):  # the plan file, or a build directory holding one
        with pytest.raises(RunnerUnavailable, match="TensorRT runner: needs an NVIDIA GPU \\(probed: "):
            runners.runner_for(artifact)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no runner"):
        runners.runner_for(tmp_path / "empty")


def test_one_rule_finds_an_ir(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    """`ir_xml` is the rule both the kinds that read an IR (build.openvino, quantize.nncf) and the runners go by:
    the .xml itself, a directory's model.xml, else its only .xml; anything else is one line naming the folder
    and what it holds."""
    import openvino as ov

    from stages.runtimes.openvino.io import ir_xml, model_from_artifact

    onnx_path, ir = tiny
    assert ir_xml(ir) == ir / "model.xml" and ir_xml(ir / "model.xml") == ir / "model.xml"
    named = tmp_path / "named"
    named.mkdir()
    for name in ("model.xml", "model.bin"):
        (named / name.replace("model", "resnet")).write_bytes((ir / name).read_bytes())
    assert ir_xml(named) == named / "resnet.xml"  # a foreign IR, named its own way
    assert isinstance(runners.runner_for(named), OpenVinoRunner)
    assert len(model_from_artifact(ov.Core(), named).outputs) == 1
    (named / "other.xml").write_text("<net/>")
    with pytest.raises(
        ValueError,
        match=r"^named/ is not an OpenVINO IR directory: no model.xml and not exactly "
        r"one .xml \(has: other.xml, resnet.bin, resnet.xml\)$",
    ):
        ir_xml(named)
    with pytest.raises(ValueError, match="no runner"):
        runners.runner_for(named)
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    for i in range(10):
        (crowded / f"f{i}.txt").write_text("")
    with pytest.raises(ValueError, match=r"\(has: f0.txt, .*, f7.txt, and 2 more\)$"):
        ir_xml(crowded)
    with pytest.raises(ValueError, match=r"model.onnx: not an OpenVINO IR"):
        ir_xml(onnx_path)
    with pytest.raises(ValueError, match=r"no such model file"):
        ir_xml(tmp_path / "missing")


def test_runner_for_goes_by_engine_json(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    onnx_path, ir = tiny
    # An OpenVINO build directory: OpenVINO, with the device and precision its engine.json records.
    runner = runners.runner_for(ir)
    assert isinstance(runner, OpenVinoRunner) and runner.info == engine_info.read(ir)
    assert runner.requested_precision == "f32" and runner.device == "CPU"
    # A TensorRT sidecar wins over the IR beside it: the engine is what was built, the .xml a leftover.
    both = tmp_path / "both"
    ir_from_onnx(onnx_path, both, precision=None)
    engine_info.write(trt_info(), both)
    with pytest.raises(ValueError, match=r"^\S+/both: engine.json says tensorrt, but there is no .engine/.plan file"):
        runners.runner_for(both)  # not a guess at the IR, not a GPU probe: the artifact is incomplete
    (both / "model.engine").write_bytes(b"\0")
    assert runners.engine_info_for(both / "model.engine") == trt_info()  # the sidecar beside the engine file
    for artifact in (both, both / "model.engine"):
        with pytest.raises(RunnerUnavailable, match="TensorRT runner: needs an NVIDIA GPU"):
            runners.runner_for(artifact)
    # An OpenVINO sidecar with no IR beside it is an error, not a fallback.
    lone = tmp_path / "lone"
    lone.mkdir()
    engine_info.write(ov_info(), lone)
    with pytest.raises(ValueError, match="engine.json says openvino, but there is no model.xml"):
        runners.runner_for(lone)
    # An .onnx file runs in ONNX Runtime whatever sits beside it; an explicit EngineInfo beats the directory's.
    (onnx_path.parent / "engine.json").write_text(trt_info().model_dump_json(by_alias=True))
    assert isinstance(runners.runner_for(onnx_path), OrtRunner) and runners.engine_info_for(onnx_path) is None
    explicit = runners.runner_for(both, info=ov_info("f16"), precision="f32")
    assert isinstance(explicit, OpenVinoRunner) and explicit.info == ov_info("f16")
    assert explicit.requested_precision == "f32"  # the caller's precision still wins over engine.json's
    # A malformed sidecar is one line naming it, from runner_for as from the runner.
    (ir / "engine.json").write_text('{"schema": 1, "backend": "onnx"}')
    for make in (runners.runner_for, OpenVinoRunner):
        with pytest.raises(
            ValueError,
            match=r"^\S+/ir/engine.json: backend: Input should be 'openvino', "
            r"'tensorrt' or 'onnxruntime' \(and \d+ more errors\)$",
        ):
            make(ir)


def test_onnx_precision_labels(tmp_path: Path) -> None:
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    qdq = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializer=[scale, zero],
    )
    path = save(
        helper.make_model(qdq, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "qdq.onnx"
    )
    runner = runners.runner_for(path)
    assert runner.precision == "int8 (onnxruntime)"
    x = np.array([[0.0, 0.1, -0.52, 3.0]], np.float32)
    np.testing.assert_allclose(runner.infer({"x": x})["y"], np.round(x / 0.05) * 0.05, atol=1e-6)
    half = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["n", 4])],
    )
    path = save(
        helper.make_model(half, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "half.onnx"
    )
    runner = runners.runner_for(path)
    assert runner.precision == "fp16 (onnxruntime)"
    assert runner.infer({"x": -x})["y"].dtype == np.float16  # float32 feeds are cast to the model's dtype


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("mode", ["latency", "throughput"])
def test_benchmark_returns_a_sane_timing(tiny: tuple[Path, Path], engine: str, mode: str) -> None:
    runner = runners.runner_for(tiny[0] if engine == "onnxruntime" else tiny[1])
    t = runner.benchmark(feeds(4), mode, min_seconds=0.2, warmup=2)
    assert t.mode == mode and t.batch == 4 and t.iterations >= 1 and t.seconds >= 0.2
    assert 0 < t.p5_ms <= t.p50_ms <= t.p90_ms <= t.p95_ms <= t.p99_ms
    assert t.throughput == pytest.approx(4 * t.iterations / t.seconds)
    assert t.cpu_other_fraction >= 0 and 1 <= t.attempts <= measure.MAX_ATTEMPTS
    if engine == "openvino" and mode == "throughput":
        optimal = int(runner._compile("THROUGHPUT").get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        assert t.requests == optimal and t.iterations % optimal == 0  # whole rounds, as benchmark_app
        assert runner.describe()["throughput"]["OPTIMAL_NUMBER_OF_INFER_REQUESTS"] == str(optimal)
    else:
        assert t.requests == 1
    assert set(t.as_dict()) >= {
        "batch",
        "requests",
        "iterations",
        "seconds",
        "p5_ms",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "throughput",
        "cpu_other_fraction",
    }


def test_measure_repeats_while_other_processes_are_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = lambda s: ([1.0, 2.0, 3.0], 3, 0.01)  # noqa: E731
    noise = iter([(0.5, 0.0), (0.3, 0.0), (0.02, 0.0)])
    monkeypatch.setattr(measure.CpuMeter, "stop", lambda self: next(noise))
    t = measure.measure(loop, mode="latency", batch=2, requests=1, min_seconds=0.0)
    assert t.attempts == 3 and t.cpu_other_fraction == 0.02 and t.p50_ms == 2.0 and t.throughput == 600
    noise = iter([(0.9, 0.0), (0.5, 0.0), (0.7, 0.0)])  # never quiet: the least noisy attempt is kept
    assert measure.measure(loop, mode="latency", batch=1, requests=1, min_seconds=0.0).cpu_other_fraction == 0.5
    noise = iter([(0.0, 0.0)])
    assert measure.measure(loop, mode="latency", batch=1, requests=1, min_seconds=0.0).attempts == 1


def test_cpu_meter_sees_another_process() -> None:
    meter = measure.CpuMeter()
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    try:
        time.sleep(0.2)
        meter.start()
        time.sleep(0.8)  # we sleep: whatever CPU was busy was someone else's
        other, resolution = meter.stop()
    finally:
        busy.wait()
    assert other > 0.5 and resolution < 0.1  # the spinning child took most of a core


def test_cpu_identity_reads_proc_cpuinfo() -> None:
    ident = cpu.cpu_identity()
    assert ident["cpu"] and ident["cpus"] == str(cpu.available_cpus())
    assert set(ident["cpu_flags"].split()) <= set(cpu.ISA_FLAGS) | {"none"}


# -- the runner modules' import graph ----------------------------------------------------------------

STAGES = Path(runners.__file__).resolve().parents[1]  # stages/
RUNNERS = {"stages.runtimes.onnxrt.runner", "stages.runtimes.openvino.runner", "stages.runtimes.tensorrt.runner"}


def stage_modules() -> dict[str, Path]:
    """Every module under stages/ by dotted name (a package by its __init__)."""
    out = {}
    for path in sorted(STAGES.rglob("*.py")):
        parts = path.relative_to(STAGES.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """stages module -> the stages modules it can import (module level or inside functions), read with
    `pipeline.keys.closure.imports_json` as the keys read them."""
    from pipeline.keys.closure import _absolute, imports_json

    modules = stage_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for target, names in json.loads(imports_json(path)):
            absolute = _absolute(target, package)
            if absolute is None:
                continue
            edges |= {m for m in (absolute, *(f"{absolute}.{n}" for n in names)) if m in modules}
        graph[name] = edges - {name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_no_import_cycle_among_stages_modules() -> None:
    import graphlib

    graph = import_graph()
    # the graph sees function-level and `from stages.x import y` imports
    assert graph["stages.runtimes.runners"] >= RUNNERS
    assert {"stages.data.base", "stages.data.batching"} <= graph["stages.data.python"]  # it sees the data package
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle
    with pytest.raises(graphlib.CycleError):  # and would see the old _runners <-> _trt_runner cycle
        graphlib.TopologicalSorter({**graph, "stages.runtimes.tensorrt.runner": {"stages.runtimes.runners"}}).prepare()
    with pytest.raises(graphlib.CycleError):  # or one like the old _data <-> _images (a reader importing a kind)
        graphlib.TopologicalSorter({**graph, "stages.data.base": {"stages.data.images"}}).prepare()


def test_a_runner_imports_no_other_runner_and_the_runtime_not_the_builder() -> None:
    graph = import_graph()
    for runner in RUNNERS:
        assert not reachable(graph, runner) & (RUNNERS | {"stages.runtimes.runners"}), runner
    assert "stages.runtimes.tensorrt.build" not in reachable(graph, "stages.runtimes.tensorrt.runner")
    assert (
        "stages.runtimes.tensorrt.layers" in graph["stages.runtimes.tensorrt.runner"] & graph["stages.build_tensorrt"]
    )  # what they share
    # runner_for is the one place that picks a runner: no stage kind names one but validate's reference, a
    # builder's self-check, quantize.search, which judges OpenVINO engines only (its key holds no other runtime),
    # and the packagers' smoke request, which runs a served file in its server's runtime, not in the one
    # runner_for would pick (OVMS serves an .onnx with OpenVINO)
    pickers = {m for m, edges in graph.items() if edges & RUNNERS} - {"stages.runtimes.runners"}
    allowed = {"stages.validate", "stages.build_tensorrt", "stages.quantization.search_run", "stages.packaging.smoke"}
    assert pickers <= allowed, pickers
    assert graph["stages.quantization.search_run"] & RUNNERS == {"stages.runtimes.openvino.runner"}


def test_kind_keys_hold_only_the_runtimes_they_run() -> None:
    from pipeline.cache.hashing import DigestMemo
    from pipeline.keys.closure import kind_closure

    def distributions(module: str) -> set[str]:
        file = STAGES / f"{module.rpartition('.')[2]}.py"
        return set(kind_closure(module, file, DigestMemo(None))["distributions"])

    trt, ov, validate = (distributions(f"stages.{k}") for k in ("build_tensorrt", "build_openvino", "validate"))
    assert "tensorrt" in trt and "openvino" not in trt
    assert "openvino" in ov and "tensorrt" not in ov
    assert {"tensorrt", "openvino", "onnxruntime"} <= validate  # runner_for may run any of them
    search = distributions("stages.quantize_search")
    assert {"openvino", "nncf"} <= search and not {"tensorrt", "onnxruntime"} & search


def test_one_onnxruntime_session_factory(tiny: tuple[Path, Path]) -> None:
    from stages.runtimes.onnx.io import SELF_CHECK_THREADS, session_from_onnx

    def threads(session: object) -> int:
        return session.get_session_options().intra_op_num_threads  # type: ignore[attr-defined]

    onnx_path = tiny[0]
    assert threads(session_from_onnx(onnx_path)) == SELF_CHECK_THREADS == min(2, os.cpu_count() or 1)
    assert threads(session_from_onnx(onnx_path, threads=3)) == 3
    assert threads(OrtRunner(onnx_path, threads=3).session) == 3  # the runner's explicit threads win
    default = OrtRunner(onnx_path)
    assert default.threads == cpu.available_cpus() and threads(default.session) == default.threads
    makers = [p.relative_to(STAGES).as_posix() for p in STAGES.rglob("*.py") if "InferenceSession(" in p.read_text()]
    assert makers == ["runtimes/onnx/io.py"]
