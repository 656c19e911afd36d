"""package.triton called directly: an OpenVINO engine and a bare ONNX become checked, smoke-tested models; TensorRT
plans for several GPUs (fabricated engine.json records, dummy plan files) become one model keyed by compute
capability; every problem stops the stage before anything is written, in one line naming the model and field."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from graphs import CONV_SPEC, FCN_SPEC, conv_bn, fcn, model_of, save
from harness import cpu_default_ov_precision, run_stage
from onnx import TensorProto, helper
from trt_records import trt_engine

from stages.build_openvino import BuildOpenvino
from stages.package_triton import PackageTriton
from stages.packaging.members import member_from
from stages.packaging.triton.plan import default_name
from stages.packaging.triton.repository import check_repository
from stages.runtimes import engine_info

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

OV = "engine@openvino-fp32"


def parsed(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def package(outdir: Path, members: dict[str, Path], reference: Path | None = None, **params) -> dict:
    inputs: dict[str, Path] = {f"models[{label}]": path for label, path in members.items()}
    if reference is not None:
        inputs["reference"] = reference
    return run_stage(PackageTriton, outdir, params, inputs=inputs)


def test_an_openvino_engine_and_a_bare_onnx_become_two_checked_models(
    tmp_path: Path, ov_engine: Path, onnx_file: Path
) -> None:
    summary = package(tmp_path, {OV: ov_engine, "simplify": onnx_file}, reference=onnx_file)
    assert summary == {"models": 2, "files": 3, "smoke_ran": 2, "smoke_skipped": 0}
    repo = tmp_path / "repository"
    assert tree(repo) == [
        "engine_openvino_fp32/1/model.bin",
        "engine_openvino_fp32/1/model.xml",
        "engine_openvino_fp32/config.pbtxt",
        "simplify/1/model.onnx",
        "simplify/config.pbtxt",
    ]
    ov = parsed(repo / "engine_openvino_fp32" / "config.pbtxt")
    assert (ov.name, ov.backend, ov.platform, ov.max_batch_size) == ("engine_openvino_fp32", "openvino", "", 8)
    assert [(i.name, i.data_type, list(i.dims)) for i in ov.input] == [("input", model_config_pb2.TYPE_FP32, [3, 8, 8])]
    assert [(o.name, list(o.dims)) for o in ov.output] == [("out", [4, 8, 8])]
    assert [(g.kind, g.count) for g in ov.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)]
    assert ov.default_model_filename == "model.xml" and not ov.cc_model_filenames
    assert not ov.HasField("dynamic_batching")
    onnx_config = parsed(repo / "simplify" / "config.pbtxt")
    # The bare ONNX's batch dim is symbolic (unbounded): Triton's own default-max-batch-size, 4.
    assert (onnx_config.backend, onnx_config.max_batch_size, onnx_config.default_model_filename) == (
        "onnxruntime",
        4,
        "model.onnx",
    )
    assert (repo / "simplify" / "1" / "model.onnx").read_bytes() == onnx_file.read_bytes()
    assert (repo / "engine_openvino_fp32" / "1" / "model.bin").read_bytes() == (ov_engine / "model.bin").read_bytes()

    report = json.loads((tmp_path / "package.json").read_text())
    by_name = {m["name"]: m for m in report["models"]}
    for model in report["models"]:
        for f in model["files"]:
            assert f["sha256"] == hashlib.sha256((repo / f["path"]).read_bytes()).hexdigest()
        assert model["config"] == (repo / model["name"] / "config.pbtxt").read_text()
        assert model["checks"]["problems"] == [] and len(model["checks"]["run"]) == 4
    assert [f["from"] for f in by_name["engine_openvino_fp32"]["files"]] == [OV, OV]
    ov_smoke, onnx_smoke = by_name["engine_openvino_fp32"]["smoke"], by_name["simplify"]["smoke"]
    # Triton's OpenVINO backend pins only bf16: an f32 engine runs at the CPU's default (f32 on an AVX2 CPU, bf16
    # with AVX512_BF16 or AMX), and the smoke request runs it as the server will
    default = cpu_default_ov_precision()
    assert (ov_smoke["ran"], ov_smoke["runtime"], ov_smoke["request"]) == (
        True,
        f"openvino {default} (the CPU's default)",
        {"input": [1, 3, 8, 8]},
    )
    assert report["models"][0]["warnings"][0].startswith(
        "runs at the CPU's default precision, not the f32 engine@openvino-fp32 was checked at: Triton's OpenVINO "
        "backend pins only bf16"
    )
    assert ov_smoke["outputs"]["out"]["cosine"] > (0.99999 if default == "f32" else 0.999)
    assert (onnx_smoke["runtime"], onnx_smoke["outputs"]["out"]["cosine"]) == ("onnxruntime", 1.0)
    assert "--gpus" not in report["serve"]["command"] and "/models" in report["serve"]["command"]

    md = (tmp_path / "package.md").read_text()
    assert "| engine_openvino_fp32 | openvino | `1/model.xml`, `1/model.bin` | 8 | 1 x KIND_CPU | " + OV + " |" in md
    assert "| simplify | onnxruntime | `1/model.onnx` | 4 | 1 x KIND_CPU | simplify |" in md
    assert report["serve"]["command"] in md
    # The written repository passes the same checks from outside (ONNX and IR read from the written files).
    assert check_repository(repo) == []


def test_params_set_names_batching_instances_and_version(tmp_path: Path, ov_engine: Path) -> None:
    package(
        tmp_path,
        {OV: ov_engine},
        names={OV: "digits"},
        max_batch_size=4,
        instance_count=2,
        dynamic_batching={"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 100},
        version=3,
    )
    assert tree(tmp_path / "repository") == ["digits/3/model.bin", "digits/3/model.xml", "digits/config.pbtxt"]
    config = parsed(tmp_path / "repository" / "digits" / "config.pbtxt")
    assert (config.name, config.max_batch_size, config.instance_group[0].count) == ("digits", 4, 2)
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100


def test_a_static_ir_is_served_with_its_full_shape(tmp_path: Path, onnx_file: Path) -> None:
    """build.openvino with shapes: static fixes the batch at opt (2): max_batch_size 0, dims the full shape."""
    params = {"inference_precision": "f32", "shapes": "static"}
    run_stage(BuildOpenvino, tmp_path / "b", params, inputs={"model": onnx_file}, model=CONV_SPEC)
    package(tmp_path / "p", {"static": tmp_path / "b" / "model"}, reference=onnx_file, dynamic_batching=True)
    config = parsed(tmp_path / "p" / "repository" / "static" / "config.pbtxt")
    assert (config.max_batch_size, list(config.input[0].dims), list(config.output[0].dims)) == (
        0,
        [2, 3, 8, 8],
        [2, 4, 8, 8],
    )
    assert not config.HasField("dynamic_batching")  # nothing to batch: left out, and said in the report
    (model,) = json.loads((tmp_path / "p" / "package.json").read_text())["models"]
    assert model["notes"][-1] == "dynamic_batching left out: the model does not batch (max_batch_size 0)"
    assert model["smoke"]["request"] == {"input": [2, 3, 8, 8]} and model["smoke"]["outputs"]["out"]["cosine"] > 0.9999


def test_a_static_batch_onnx_is_served_without_batching_unless_asked(tmp_path: Path) -> None:
    static = save(
        model_of(
            [helper.make_node("Relu", ["x"], ["y"])],
            "relu",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
            [],
        ),
        tmp_path / "static.onnx",
    )
    package(tmp_path / "ok", {"relu": static})
    config = parsed(tmp_path / "ok" / "repository" / "relu" / "config.pbtxt")
    assert (config.max_batch_size, list(config.input[0].dims)) == (0, [1, 4])
    with pytest.raises(ValueError) as error:
        package(tmp_path / "bad", {"relu": static}, max_batch_size=8)
    assert str(error.value) == (
        "package.triton: relu/config.pbtxt: input[0].dims: max_batch_size 8 > 0, but 'x' has a static batch dim 1 in "
        "the model (Triton onnxruntime: the first dimension must be -1; export with a dynamic batch or set "
        "max_batch_size 0) (and 1 more: see the log)"
    )
    assert not (tmp_path / "bad" / "repository").exists()  # every check runs before anything is written


def test_an_ir_with_range_dims_fails_before_it_is_written(tmp_path: Path) -> None:
    """build.openvino's dynamic IR of a fully convolutional model: h and w are ranges (4..16). The backend skips an
    input's -1 when the model batches, but compares every output dim exactly, and -1 never lies strictly inside a
    range (openvino_backend#84)."""
    source = save(fcn(), tmp_path / "fcn.onnx")
    run_stage(BuildOpenvino, tmp_path / "b", {"inference_precision": "f32"}, inputs={"model": source}, model=FCN_SPEC)
    with pytest.raises(ValueError) as error:
        package(tmp_path / "p", {"fcn@openvino": tmp_path / "b" / "model"})
    assert str(error.value).startswith(
        "package.triton: fcn_openvino/config.pbtxt: output[0].dims[1]: -1, but the IR's dim of 'mask' is the range "
        "4..16: Triton's OpenVINO backend matches a range only to a size strictly inside it (openvino_backend#84)"
    )
    assert not (tmp_path / "p" / "repository").exists()


# -- TensorRT: fabricated engine.json records (no GPU here), a dummy plan file each (trt_records.py) -------------
def test_tensorrt_plans_for_four_gpus_are_one_model_keyed_by_compute_capability(tmp_path: Path) -> None:
    engines = {f"trt@fp16-{gpu}": trt_engine(tmp_path / "e", gpu) for gpu in ("T4", "L4", "A100", "H100")}
    summary = package(tmp_path / "p", engines)
    assert summary == {"models": 1, "files": 4, "smoke_ran": 0, "smoke_skipped": 1}
    repo = tmp_path / "p" / "repository"
    assert tree(repo) == [
        "trt_fp16/1/model.A100.plan",
        "trt_fp16/1/model.H100.plan",
        "trt_fp16/1/model.L4.plan",
        "trt_fp16/1/model.T4.plan",
        "trt_fp16/config.pbtxt",
    ]
    config = parsed(repo / "trt_fp16" / "config.pbtxt")
    assert (config.platform, config.max_batch_size) == ("tensorrt_plan", 8)
    assert dict(config.cc_model_filenames) == {
        "7.5": "model.T4.plan",
        "8.9": "model.L4.plan",
        "8.0": "model.A100.plan",
        "9.0": "model.H100.plan",
    }
    assert config.default_model_filename == "model.T4.plan"  # the first in recipe order: none is portable
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    assert list(config.input[0].dims) == [3, 8, 8] and list(config.output[0].dims) == [4, 8, 8]
    for gpu in ("T4", "L4", "A100", "H100"):
        assert (repo / "trt_fp16" / "1" / f"model.{gpu}.plan").read_bytes() == f"plan {gpu} fp16".encode()
    report = json.loads((tmp_path / "p" / "package.json").read_text())
    (model,) = report["models"]
    assert [m["compute_capability"] for m in model["members"]] == ["7.5", "8.9", "8.0", "9.0"]
    assert model["smoke"]["ran"] is False and "TensorRT group of 4 plans" in model["smoke"]["skipped"]
    assert report["serve"]["command"].startswith("docker run --rm --gpus all ")
    assert "10.13.0" in report["serve"]["release"]
    assert "skipped: a TensorRT group of 4 plans" in (tmp_path / "p" / "package.md").read_text()
    members = {f"trt_fp16/1/model.{g}.plan": member_from(g, engines[f"trt@fp16-{g}"]) for g in ("T4", "L4")}
    assert check_repository(repo, members) == []


def test_a_hardware_compatible_plan_is_the_default_and_precisions_are_separate_models(tmp_path: Path) -> None:
    engines = {
        "trt@fp16-T4": trt_engine(tmp_path / "e", "T4"),
        "trt@fp16-A100": trt_engine(tmp_path / "e", "A100", hardware_compatibility="AMPERE_PLUS"),
        "trt@int8-T4": trt_engine(tmp_path / "e", "T4", precision="int8"),
    }
    package(tmp_path / "p", engines)
    repo = tmp_path / "p" / "repository"
    assert sorted(p.name for p in repo.iterdir()) == ["trt_fp16", "trt_int8"]
    assert parsed(repo / "trt_fp16" / "config.pbtxt").default_model_filename == "model.A100.plan"
    assert dict(parsed(repo / "trt_int8" / "config.pbtxt").cc_model_filenames) == {"7.5": "model.T4.plan"}
    smoke = {m["name"]: m["smoke"] for m in json.loads((tmp_path / "p" / "package.json").read_text())["models"]}
    # A single plan goes to the smoke test, which needs TensorRT and the plan's GPU: neither is here.
    assert smoke["trt_int8"]["ran"] is False
    assert smoke["trt_int8"]["skipped"].startswith(("TensorRT is not installed here", "needs a GPU"))


def test_two_plans_for_one_compute_capability_fail_unless_they_are_the_same_plan(tmp_path: Path) -> None:
    same = {
        "trt@fp16-A100": trt_engine(tmp_path / "e", "A100", plan=b"one plan"),
        "trt@fp16-A100-80G": trt_engine(tmp_path / "e", "A100-80G", plan=b"one plan"),
    }
    package(tmp_path / "same", same)
    assert tree(tmp_path / "same" / "repository") == ["trt_fp16/1/model.A100.plan", "trt_fp16/config.pbtxt"]
    clash = {
        "trt@fp16-T4": trt_engine(tmp_path / "e", "T4"),
        "trt@fp16-RTX-2080": trt_engine(tmp_path / "e", "RTX-2080"),
    }
    with pytest.raises(ValueError) as error:
        package(tmp_path / "clash", clash)
    assert str(error.value) == (
        "package.triton: trt_fp16/config.pbtxt: cc_model_filenames: trt@fp16-T4 (T4) and trt@fp16-RTX-2080 (RTX-2080) "
        "are different plans for compute capability 7.5: Triton loads one plan per compute capability "
        "(server#5164); keep one"
    )
    assert not (tmp_path / "clash" / "repository").exists()


def test_a_max_batch_above_the_profile_and_a_preferred_batch_above_it_fail_in_one_line(tmp_path: Path) -> None:
    engines = {f"trt@fp16-{gpu}": trt_engine(tmp_path / "e", gpu) for gpu in ("T4", "L4")}
    with pytest.raises(ValueError) as error:
        package(tmp_path / "p", engines, max_batch_size=16)
    assert str(error.value) == (
        "package.triton: trt_fp16/config.pbtxt: max_batch_size: configuration specified max-batch 16 but TensorRT "
        "engine only supports max-batch 8 (model.T4.plan) (and 1 more: see the log)"
    )
    with pytest.raises(ValueError) as error:
        package(tmp_path / "q", engines, dynamic_batching={"preferred_batch_size": [4, 16]})
    assert str(error.value) == (
        "package.triton: trt_fp16/config.pbtxt: dynamic_batching.preferred_batch_size[1]: 16 > max_batch_size 8 "
        "(Triton: preferred size must be <= max batch size)"
    )
    assert not (tmp_path / "p" / "repository").exists() and not (tmp_path / "q" / "repository").exists()


def test_names_must_name_members_and_models_must_not_share_a_folder(tmp_path: Path, ov_engine: Path) -> None:
    # a label the recipe does not connect is a recipe error (Stage.members_problem, asked when the recipe loads);
    # at run time an entry for a member --skip-unavailable left out is passed over
    params = PackageTriton.Params.model_validate({"names": {"typo": "x"}})
    assert PackageTriton().members_problem(params, {"models": [OV]}) == (
        ("names", "typo"),
        "'typo' is not connected to models (members: engine@openvino-fp32)",
    )
    assert package(tmp_path / "a", {OV: ov_engine}, names={"trt@fp16-T4": "x"})["models"] == 1
    with pytest.raises(ValueError) as error:
        package(tmp_path / "b", {OV: ov_engine, "other": ov_engine}, names={OV: "same", "other": "same"})
    assert str(error.value) == (
        "package.triton: names: engine@openvino-fp32 and other are both model 'same', but their I/O, precision or "
        "backend differ (one config cannot serve both): set `names` to tell them apart"
    )


@pytest.mark.parametrize(
    ("labels", "gpus", "expected"),
    [
        (["engine@openvino-fp32"], [None], "engine_openvino_fp32"),
        (["../models/digits.onnx"], [None], "digits"),
        (["trt@fp16-T4", "trt@fp16-L4"], ["T4", "L4"], "trt_fp16"),
        (["trt@T4-fp16"], ["T4"], "trt_fp16"),
        (["build_a100", "build_h100"], ["A100", "H100"], "build"),
    ],
)
def test_default_model_names(tmp_path: Path, labels: list[str], gpus: list[str | None], expected: str) -> None:
    members = []
    for label, gpu in zip(labels, gpus):
        path = trt_engine(tmp_path / label.replace("/", "_"), gpu) if gpu else save(conv_bn(), tmp_path / "m.onnx")
        members.append(member_from(label, path))
    assert default_name(members) == expected


def test_a_bf16_engine_is_pinned_to_bf16_and_its_performance_hint_carried(tmp_path: Path, ov_engine: Path) -> None:
    """HINT_BF16 is the only precision Triton's OpenVINO backend sets (openvino.cc ParseParameter); an engine built
    and validated at bf16 gets it, with its PERFORMANCE_HINT, and no warning."""
    info = engine_info.read(ov_engine).model_copy(update={"inference_precision": "bf16"})
    bf16 = tmp_path / "bf16"
    shutil.copytree(ov_engine, bf16)
    engine_info.write(info, bf16)
    package(tmp_path / "p", {"engine@openvino-bf16": bf16})
    config = parsed(tmp_path / "p" / "repository" / "engine_openvino_bf16" / "config.pbtxt")
    assert {k: v.string_value for k, v in config.parameters.items()} == {
        "HINT_BF16": "yes",
        "PERFORMANCE_HINT": "latency",
    }
    model = json.loads((tmp_path / "p" / "package.json").read_text())["models"][0]
    assert model["warnings"] == [] and model["smoke"]["runtime"].startswith("openvino ")
