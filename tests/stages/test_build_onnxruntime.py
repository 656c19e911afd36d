"""build.onnxruntime called directly: the input's bytes and a typed engine.json (precision from the graph, the
recipe's dim ranges), the check at min/opt/max, the runner and validate reading the directory, and one-line
failures for a missing provider and for models that cannot open or run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from graphs import SEQUENCE_SPEC, classifier, const, model_of, save, sequence_model
from harness import run_stage
from onnx import TensorProto, helper
from pydantic import ValidationError

from pipeline.stage import DatasetInput
from stages.build_onnxruntime import BuildOnnxruntime, GraphOptimization
from stages.runtimes import engine_info, runners
from stages.runtimes.base import RunnerUnavailable
from stages.runtimes.engine_info import EngineInfo
from stages.runtimes.onnx.io import GRAPH_OPTIMIZATION, run_onnx, session_from_onnx
from stages.runtimes.onnxrt.runner import OrtRunner
from stages.validate import Validate

SPEC = {"tensors": {"input": {"shape": ["batch", 3, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 16}}}
X_SPEC = {"tensors": {"x": {"shape": ["batch", 4]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 8}}}
VERSIONS = {"onnxruntime": ort.__version__, "onnx": onnx.__version__}


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(classifier(), tmp_path_factory.mktemp("fp32") / "classifier.onnx")


@pytest.fixture(scope="module")
def built(fp32: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The classifier built with the defaults: (its output directory, the stage's summary)."""
    out = tmp_path_factory.mktemp("built")
    return out / "model", run_stage(BuildOnnxruntime, out, inputs={"model": fp32}, model=SPEC)


def build(out: Path, source: Path, spec: dict | None = None, **params: Any) -> tuple[dict[str, Any], EngineInfo]:
    summary = run_stage(BuildOnnxruntime, out, params, inputs={"model": source}, model=SPEC if spec is None else spec)
    return summary, engine_info.read(out / "model")


def x_model(nodes: list, inits: list, out_dims: list | None = None, name: str = "y") -> onnx.ModelProto:
    """x (batch, 4) float -> `nodes` -> `name` (batch, 4 unless `out_dims`)."""
    return model_of(
        nodes,
        "x_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, out_dims or ["batch", 4])],
        inits,
    )


def qdq_model() -> onnx.ModelProto:
    """x -Q/DQ-> MatMul with an int8 weight behind a DequantizeLinear -> y (batch, 3): a QDQ graph."""
    w = np.random.default_rng(2).integers(-100, 100, (4, 3)).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "z"], ["wd"]),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
    ]
    inits = [const("s", 0.05), const("z", 0, np.int8), const("wq", w, np.int8), const("ws", 0.01)]
    return x_model(nodes, inits, ["batch", 3])


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and len(message) < 600, message
    return message


# -- what it writes ----------------------------------------------------------------------------------------------
def test_fp32_build_ships_the_input_bytes_and_a_typed_engine_json(fp32: Path, built: tuple[Path, dict]) -> None:
    out, summary = built
    assert sorted(p.name for p in out.iterdir()) == ["engine.json", "model.onnx"]
    assert (out / "model.onnx").read_bytes() == fp32.read_bytes()  # the server optimizes; the file stays as given
    info = engine_info.read(out)
    assert (info.backend, info.precision, info.inference_precision, info.device.device) == (
        "onnxruntime",
        "fp32",
        None,
        "CPU",
    )
    assert [t.model_dump() for t in info.inputs] == [
        {"name": "input", "dtype": "float32", "dims": ("1..16", 3, 8, 8), "min": None, "opt": None, "max": None}
    ]
    assert [(t.name, t.dtype, t.dims) for t in info.outputs] == [("logits", "float32", ("1..16", 10))]
    assert info.toolchain == VERSIONS and info.schema_version == engine_info.SCHEMA
    assert info.details == {
        "providers": ["CPUExecutionProvider"],
        "graph_optimization": "all",
        "opset": {"ai.onnx": 17},
        "ir_version": 8,
        "int8_ops": 0,
        "ops": {"Conv": 1, "Flatten": 1, "Gemm": 1, "Relu": 1},
    }
    assert summary["checked"] == {
        "min": {"logits": [1, 10]},
        "opt": {"logits": [4, 10]},
        "max": {"logits": [16, 10]},
    }
    assert (summary["precision"], summary["providers"], summary["graph_optimization"]) == (
        "fp32",
        ["CPUExecutionProvider"],
        "all",
    )
    assert summary["nodes"] == 4 and summary["int8_ops"] == 0


def test_dims_take_the_recipe_ranges_by_position_and_outputs_by_dim_param(tmp_path: Path) -> None:
    """The recipe names the input's dims `batch` and `seq`; the graph's own dim_params (`N`, `S`) carry those ranges
    to the outputs that share them, and an output dim named nowhere among the inputs stays "?"."""
    nodes = [
        helper.make_node("MatMul", ["tokens", "w"], ["y"]),
        helper.make_node("ReduceMean", ["tokens"], ["pooled"], axes=[1], keepdims=0),
    ]
    model = model_of(
        nodes,
        "renamed",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["N", "S", 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", 2]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", "K"]),
        ],
        [const("w", np.ones((4, 2)))],
    )
    spec = {
        "tensors": {"tokens": {"shape": ["batch", "seq", 4]}},
        "dims": {"batch": {"min": 1, "opt": 2, "max": 4}, "seq": {"min": 3, "opt": 8, "max": 128}},
    }
    summary, info = build(tmp_path / "b", save(model, tmp_path / "renamed.onnx"), spec)
    assert info.inputs[0].dims == ("1..4", "3..128", 4)
    assert {t.name: t.dims for t in info.outputs} == {"y": ("1..4", "3..128", 2), "pooled": ("1..4", "?")}
    assert summary["checked"]["max"] == {"y": [4, 128, 2], "pooled": [4, 4]}
    # The project's sequence model (an int64 mask beside the tokens): every input and output, ranged or fixed.
    _, info = build(tmp_path / "seq", save(sequence_model(), tmp_path / "seq.onnx"), SEQUENCE_SPEC)
    assert [(t.name, t.dtype, t.dims) for t in info.inputs] == [
        ("tokens", "float32", ("1..4", "4..16", 4)),
        ("attention_mask", "int64", ("1..4", "4..16")),
    ]
    assert {t.name: t.dims for t in info.outputs} == {"hidden": ("1..4", "4..16", 4), "logits": ("1..4", 3)}


def test_precision_comes_from_the_graph(tmp_path: Path) -> None:
    summary, info = build(tmp_path / "q", save(qdq_model(), tmp_path / "qdq.onnx"), X_SPEC)
    assert info.precision == "int8" and summary["precision"] == "int8"
    assert info.details["ops"] == {"DequantizeLinear": 2, "MatMul": 1, "QuantizeLinear": 1}
    assert info.details["int8_ops"] == summary["int8_ops"] == 3
    assert summary["checked"]["max"] == {"y": [8, 3]}
    half = model_of(
        [helper.make_node("Relu", ["x"], ["y"])],
        "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 4])],
        [],
    )
    _, info = build(tmp_path / "h", save(half, tmp_path / "half.onnx"), X_SPEC)
    assert info.precision == "fp16" and info.inputs[0].dtype == info.outputs[0].dtype == "float16"


def test_graph_optimization_is_recorded_and_the_reproduce_command_opens_the_model(tmp_path: Path, fp32: Path) -> None:
    assert set(get_args(GraphOptimization)) == set(GRAPH_OPTIMIZATION)  # the param's choices are the factory's
    assert all(f.description for f in BuildOnnxruntime.Params.model_fields.values())
    _, info = build(tmp_path / "b", fp32, graph_optimization="basic")
    assert info.details["graph_optimization"] == "basic"
    assert info.reproduce[:2] == ("python", "-c") and "GraphOptimizationLevel.ORT_ENABLE_BASIC" in info.reproduce[2]
    ran = subprocess.run(
        [sys.executable, *info.reproduce[1:]], cwd=tmp_path / "b" / "model", capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "['CPUExecutionProvider'] [('input', ['batch', 3, 8, 8])]"


def test_the_same_input_builds_the_same_bytes(tmp_path: Path, fp32: Path, built: tuple[Path, dict]) -> None:
    build(tmp_path / "again", fp32)
    for name in ("model.onnx", "engine.json"):
        assert (tmp_path / "again" / "model" / name).read_bytes() == (built[0] / name).read_bytes()


# -- who reads it ------------------------------------------------------------------------------------------------
def test_runner_for_the_directory_runs_the_onnx_as_engine_json_says(
    tmp_path: Path, fp32: Path, built: tuple[Path, dict]
) -> None:
    out = built[0]
    runner = runners.runner_for(out)
    assert isinstance(runner, OrtRunner) and runner.path == out / "model.onnx"
    assert runner.info == engine_info.read(out) and runner.precision == "fp32 (onnxruntime)"
    assert runner.describe()["provider"] == "CPUExecutionProvider" and runner.describe()["graph_optimization"] == "all"
    raw = session_from_onnx(fp32, threads=runner.threads)  # the same threads: the same arithmetic
    for batch in (1, 5, 16):
        x = {"input": np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)}
        np.testing.assert_array_equal(runner.infer(x)["logits"], run_onnx(raw, x)["logits"])
    # The level engine.json records is the one the runner's session opens with.
    build(tmp_path / "off", fp32, graph_optimization="disable")
    level = runners.runner_for(tmp_path / "off" / "model").session.get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # engine.json says onnxruntime: exactly one .onnx beside it, or one line saying what is there.
    (tmp_path / "off" / "model" / "extra.onnx").write_bytes(fp32.read_bytes())
    with pytest.raises(ValueError, match=r"/off/model: engine.json says onnxruntime, but there is more than one .onnx"):
        runners.runner_for(tmp_path / "off" / "model")
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "engine.json").write_bytes((out / "engine.json").read_bytes())
    with pytest.raises(ValueError, match=r"/lone: engine.json says onnxruntime, but there is no .onnx file$"):
        runners.runner_for(lone)


def test_an_engine_for_a_provider_missing_here_builds_unchecked_and_does_not_run(tmp_path: Path, fp32: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    summary, info = build(tmp_path / "gpu", fp32, providers=providers, check=False)
    assert info.device.device == "GPU" and info.details["providers"] == providers and "checked" not in summary
    with pytest.raises(RunnerUnavailable, match=r"'CUDAExecutionProvider' is not available here"):
        runners.runner_for(tmp_path / "gpu" / "model")  # rather than ONNX Runtime's silent fall back to the CPU


def test_validate_passes_the_directory_against_its_onnx_with_a_tight_gate(
    tmp_path: Path, fp32: Path, built: tuple[Path, dict]
) -> None:
    data = DatasetInput("rand", {"kind": "synthetic", "count": 24, "seed": 3}, tmp_path)
    params = {"gates": {"max_abs": 1e-6}, "latency": False, "throughput_batches": []}
    inputs = {"candidate": built[0], "reference": fp32, "data": data}
    summary = run_stage(Validate, tmp_path / "v", params, inputs=inputs, model=SPEC)
    r = json.loads((tmp_path / "v" / "report.json").read_text())
    assert r["passed"] and summary["gates"] == f"{r['gates_total']}/{r['gates_total']} passed"
    assert r["outputs"]["logits"]["figures"]["max_abs"] <= 1e-6
    c = r["candidate"]
    assert c["backend"] == c["runner"] == "onnxruntime" and c["precision"] == "fp32 (onnxruntime)"
    assert c["engine_info"] == engine_info.read(built[0]).as_json(details=False)
    md = (tmp_path / "v" / "report.md").read_text()
    tools = f"onnx {onnx.__version__}, onnxruntime {ort.__version__}"  # engine.json keeps its keys sorted
    assert f"- engine (engine.json): onnxruntime, fp32, for CPU; {tools}" in md


# -- failures, one line each -------------------------------------------------------------------------------------
def test_a_provider_that_does_not_exist_fails_naming_it(tmp_path: Path, fp32: Path) -> None:
    with pytest.raises(ValueError) as failed:
        build(tmp_path / "b", fp32, providers=["CPUExecutionProvider", "NoSuchExecutionProvider"])
    assert one_line(failed).startswith(
        "providers: provider 'NoSuchExecutionProvider' is not an ONNX Runtime provider"
    ) and one_line(failed).endswith(
        f"; this onnxruntime {ort.__version__} has " + ", ".join(ort.get_available_providers())
    )
    assert not (tmp_path / "b" / "model" / "engine.json").exists()
    with pytest.raises(ValueError, match=r"did you mean 'CPUExecutionProvider'\?"):
        build(tmp_path / "typo", fp32, providers=["CPUExecutionProvder"])
    for bad in ([], ["CPUExecutionProvider", "CPUExecutionProvider"]):
        with pytest.raises(ValidationError, match="providers"):
            BuildOnnxruntime.Params.model_validate({"providers": bad})


def test_a_model_with_non_finite_outputs_fails_the_check_naming_the_point(tmp_path: Path) -> None:
    broken = save(x_model([helper.make_node("Log", ["x"], ["y"])], []), tmp_path / "log.onnx")  # log of a negative
    with pytest.raises(ValueError) as failed:
        build(tmp_path / "b", broken, X_SPEC)
    assert one_line(failed).startswith("output 'y' has ") and one_line(failed).endswith(
        " non-finite values of 4 at the min shape x [1, 4]"
    )


def test_a_model_that_runs_at_one_batch_only_fails_at_the_first_other(tmp_path: Path) -> None:
    fixed = x_model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [const("shape", [2, 4], np.int64)])
    with pytest.raises(ValueError) as failed:
        build(tmp_path / "b", save(fixed, tmp_path / "fixed.onnx"), X_SPEC)
    assert one_line(failed).startswith("the model failed to run at the min shape x [1, 4]: ")
    assert one_line(failed).endswith("Input shape:{1,4}, requested shape:{2,4}")  # ONNX Runtime's why, not its C++
    # At the one batch it accepts, it builds: the check is what rejected it.
    pinned = {"tensors": X_SPEC["tensors"], "dims": {"batch": {"min": 2, "opt": 2, "max": 2}}}
    summary, info = build(tmp_path / "ok", save(fixed, tmp_path / "fixed.onnx"), pinned)
    assert summary["checked"] == {"min": {"y": [2, 4]}} and info.inputs[0].dims == ("2..2", 4)


def test_models_that_cannot_be_read_or_opened_fail_in_one_line(tmp_path: Path, fp32: Path) -> None:
    unknown = save(x_model([helper.make_node("NoSuchOp", ["x"], ["y"])], []), tmp_path / "op.onnx", check=False)
    with pytest.raises(ValueError) as failed:
        build(tmp_path / "op", unknown, X_SPEC)
    assert one_line(failed).startswith(
        "onnxruntime cannot open model.onnx (all graph optimization, CPUExecutionProvider): "
    ) and "NoSuchOp" in one_line(failed)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a protobuf at all\xff\xff")
    with pytest.raises(ValueError) as failed:
        build(tmp_path / "g", garbage, X_SPEC)
    assert one_line(failed).startswith("input model: garbage.onnx is not an ONNX model: ")
    with pytest.raises(ValueError, match=r"^input model: op is not an .onnx file"):
        build(tmp_path / "dir", tmp_path / "op", X_SPEC)  # a directory
    with pytest.raises(ValueError, match=r"^the model's inputs \['input'\] do not match model.tensors \['x'\]"):
        build(tmp_path / "names", fp32, X_SPEC)
    wide = {
        "tensors": {"input": {"shape": ["batch", 3, 8, "w"]}},
        "dims": {**SPEC["dims"], "w": {"min": 8, "opt": 8, "max": 9}},
    }
    with pytest.raises(
        ValueError, match=r"^input 'input' dim 3 is fixed at 8 in the graph, but model.tensors declares"
    ):
        build(tmp_path / "wide", fp32, wide)


# -- without model.tensors ---------------------------------------------------------------------------------------
def test_without_model_tensors_the_check_runs_at_static_shapes_or_warns(
    tmp_path: Path, fp32: Path, capsys: pytest.CaptureFixture
) -> None:
    static = model_of(
        [helper.make_node("Relu", ["x"], ["y"])],
        "static",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
        [],
    )
    summary, info = build(tmp_path / "s", save(static, tmp_path / "static.onnx"), {})
    assert summary["checked"] == {"opt": {"y": [3, 4]}} and info.inputs[0].dims == (3, 4)
    summary, info = build(tmp_path / "d", fp32, {})
    assert summary["checked"] == {} and info.inputs[0].dims == ("?", 3, 8, 8) and info.outputs[0].dims == ("?", 10)
    assert (
        "WARNING: build_onnxruntime: the check only opened the model: input 'input' has symbolic dims and the "
        "recipe declares no model.tensors to run it at"
    ) in capsys.readouterr().out
