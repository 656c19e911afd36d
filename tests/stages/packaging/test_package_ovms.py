"""package.ovms called directly, and the checks it runs (OVMS's schema, the repository as OVMS resolves it): an
OpenVINO ov_engine from build.openvino and a bare .onnx packaged, checked and smoke-tested; every class of config the
server refuses or quietly mishandles rejected with one line; OVMS's own example configs accepted."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from graphs import conv_bn, model_of, save
from harness import run_stage
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from stages.package_ovms import PackageOvms
from stages.packaging.members import member_from
from stages.packaging.ovms.config import default_name, parse_shape, shape_text
from stages.packaging.ovms.repository import CHECKS, check_repository
from stages.packaging.ovms.schema import SCHEMA_PATH, schema_problem
from stages.packaging.smoke import cosine_floor
from stages.runtimes import engine_info
from stages.runtimes.engine_info import EngineDevice, EngineInfo, TensorInfo

ov = pytest.importorskip("openvino")
jsonschema = pytest.importorskip("jsonschema")

FIXTURES = Path(__file__).parent / "ovms_fixtures"
ENGINE, BARE = "engine@openvino-fp32", "simplify"
AT = "config.json: model_config_list[0].config"
AT_RE = re.escape(AT)


def package(outdir: Path, models: dict[str, Path], reference: Path | None = None, **params: Any) -> dict:
    inputs: dict[str, Any] = {f"models[{label}]": path for label, path in models.items()}
    if reference is not None:
        inputs["reference"] = reference
    return run_stage(PackageOvms, outdir, params, inputs=inputs)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the package ---------------------------------------------------------------------------------------------------
def test_an_engine_and_a_bare_onnx_make_a_checked_repository(tmp_path: Path, ov_engine: Path, onnx_file: Path) -> None:
    summary = package(tmp_path, {ENGINE: ov_engine, BARE: onnx_file}, reference=onnx_file)
    repo = tmp_path / "repository"
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    assert files == [
        "config.json",
        "engine_openvino_fp32/1/model.bin",
        "engine_openvino_fp32/1/model.xml",
        "simplify/1/model.onnx",
    ]
    config = json.loads((repo / "config.json").read_text())
    assert config == {
        "model_config_list": [
            {
                "config": {
                    "name": "engine_openvino_fp32",
                    "base_path": "engine_openvino_fp32",
                    "shape": {"input": "(1:8,3,8,8)"},
                    "model_version_policy": {"specific": {"versions": [1]}},
                    "target_device": "CPU",
                    "plugin_config": {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
                }
            },
            {
                "config": {
                    "name": "simplify",
                    "base_path": "simplify",
                    "shape": {"input": "(-1,3,8,8)"},
                    "model_version_policy": {"specific": {"versions": [1]}},
                    "target_device": "CPU",
                    "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"},
                }
            },
        ]
    }
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator(schema).validate(config)  # the project's copy of OVMS's schema, used directly
    assert check_repository(repo) == []
    assert (repo / "engine_openvino_fp32/1/model.bin").read_bytes() == (ov_engine / "model.bin").read_bytes()

    report = json.loads((tmp_path / "package.json").read_text())
    assert report["config"] == config and report["reference"] == "model.onnx"
    assert set(report["checks"]) == {*CHECKS, "sha256", "smoke"}
    assert report["serve"]["baremetal"] == "ovms --config_path repository/config.json --port 9000 --rest_port 8000"
    md = (tmp_path / "package.md").read_text()
    assert '| engine_openvino_fp32 | 1 | `model.xml`, `model.bin` | `{"input": "(1:8,3,8,8)"}` | f32 |' in md
    assert "| simplify | ran (openvino f32; cos >= 0.99) | input [1, 3, 8, 8] | out [1, 4, 8, 8] cos 1.0 |" in md
    assert '-v "$PWD/repository:/models:ro" openvino/model_server:<release> --config_path /models/config.json' in md
    first, second = report["models"]
    assert (first["name"], first["label"], first["backend"], first["version"]) == (
        "engine_openvino_fp32",
        ENGINE,
        "openvino",
        1,
    )
    assert (second["backend"], second["served_by"], second["engine"]) == ("onnxruntime", "openvino", None)
    assert (
        first["engine"]["inference_precision"] == "f32" and first["config"] == config["model_config_list"][0]["config"]
    )
    for model in report["models"]:
        for f in model["files"]:
            assert f["sha256"] == sha256(repo / f["path"]) and f["bytes"] == (repo / f["path"]).stat().st_size
        smoke = model["smoke"]
        assert smoke["ran"] and smoke["runtime"] == "openvino f32" and smoke["request"] == {"input": [1, 3, 8, 8]}
        assert smoke["outputs"]["out"]["shape"] == [1, 4, 8, 8] and smoke["outputs"]["out"]["cosine"] > 0.99999
    assert first["inputs"] == [{"name": "input", "dtype": "float32", "dims": ["1..8", 3, 8, 8]}]
    assert (
        summary["models"] == 2
        and list(summary["smoke"]) == ["engine_openvino_fp32", "simplify"]
        and summary["smoke"]["simplify"] > 0.99999
    )


def test_params_shape_the_entries(
    tmp_path: Path, ov_engine: Path, onnx_file: Path, capsys: pytest.CaptureFixture
) -> None:
    package(
        tmp_path,
        {ENGINE: ov_engine, BARE: onnx_file},
        names={ENGINE: "resnet.v2", BARE: "resnet-onnx"},
        version=3,
        nireq=2,
        shape={ENGINE: {"input": "(2:4,3,8,8)"}},
        batch_size={BARE: "1:8"},
        plugin_config={"NUM_STREAMS": 2, "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False},
    )
    repo = tmp_path / "repository"
    first, second = (c["config"] for c in json.loads((repo / "config.json").read_text())["model_config_list"])
    assert first == {
        "name": "resnet.v2",
        "base_path": "resnet.v2",
        "shape": {"input": "(2:4,3,8,8)"},
        "model_version_policy": {"specific": {"versions": [3]}},
        "nireq": 2,
        "target_device": "CPU",
        "plugin_config": {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 2,
            "ENABLE_CPU_PINNING": False,
        },
    }
    assert second["batch_size"] == "1:8" and "shape" not in second and (repo / "resnet-onnx/3/model.onnx").is_file()
    smoke = json.loads((tmp_path / "package.json").read_text())["models"][0]["smoke"]
    assert smoke["request"] == {"input": [2, 3, 8, 8]}  # the config's shape, at its smallest
    assert "WARNING" not in capsys.readouterr().out


def test_a_precision_or_device_other_than_the_build_checked_is_warned(
    tmp_path: Path, ov_engine: Path, capsys: pytest.CaptureFixture
) -> None:
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        plugin = {"PERFORMANCE_HINT": "THROUGHPUT"}
    else:
        plugin = {"INFERENCE_PRECISION_HINT": "bf16"}
    package(tmp_path / "a", {ENGINE: ov_engine}, plugin_config=plugin)
    package(tmp_path / "b", {ENGINE: ov_engine}, target_device="GPU")  # written for GPU, smoke-tested on CPU
    out = capsys.readouterr().out
    assert "WARNING: package_ovms: engine_openvino_fp32: served on GPU, but engine@openvino-fp32 was built and " in out
    if "INFERENCE_PRECISION_HINT" in plugin:
        assert "INFERENCE_PRECISION_HINT bf16 is not the f32 engine@openvino-fp32 was built and checked with" in out


def test_without_a_reference_the_smoke_test_still_runs(tmp_path: Path, ov_engine: Path) -> None:
    summary = package(tmp_path, {ENGINE: ov_engine})
    model = json.loads((tmp_path / "package.json").read_text())["models"][0]
    assert model["smoke"]["ran"] and model["smoke"]["outputs"]["out"]["cosine"] is None
    assert summary["smoke"] == {"engine_openvino_fp32": None}


def test_a_model_that_disagrees_with_the_reference_fails_the_package(
    tmp_path: Path, ov_engine: Path, onnx_file: Path
) -> None:
    """The ov_engine built from conv_bn against a reference whose conv weights are negated."""
    other = conv_bn()
    for init in other.graph.initializer:
        if init.name == "cw":
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), "cw"))
    reference = save(other, tmp_path / "ref" / "other.onnx")
    with pytest.raises(ValueError, match=r"^engine_openvino_fp32: output 'out' cosine -?0\.\d+ < 0\.99 against "):
        package(tmp_path / "p", {ENGINE: ov_engine}, reference=reference)
    summary = package(tmp_path / "q", {ENGINE: ov_engine}, reference=reference, smoke_cosine_min=-1.0)
    assert summary["smoke"]["engine_openvino_fp32"] < 0.99


def test_the_smoke_gate_depends_on_the_precision(ov_engine: Path) -> None:
    """A quantized ov_engine meets random requests outside its calibrated ranges: its default gate only tells the model
    from another one (validate gates its accuracy on real data); a float ov_engine must reproduce the reference."""
    member = member_from(ENGINE, ov_engine)
    assert cosine_floor(member, None, False) == 0.99 and cosine_floor(member, 0.7, True) == 0.7
    int8 = dataclasses.replace(member, precision="int8")
    assert cosine_floor(int8, None, False) == 0.5 and cosine_floor(int8, 0.999, False) == 0.999
    assert cosine_floor(int8, None, True) == 0.95  # on real samples a quantized ov_engine must stay close
    assert cosine_floor(dataclasses.replace(member, precision="fp16"), None, False) == 0.99


def test_a_tensorrt_engine_is_refused_and_nothing_is_written(tmp_path: Path, ov_engine: Path) -> None:
    folder = tmp_path / "trt"
    folder.mkdir()
    (folder / "model.engine").write_bytes(b"a TensorRT plan: never run here")
    engine_info.write(_trt_info(), folder)
    with pytest.raises(ValueError) as caught:
        package(tmp_path / "p", {ENGINE: ov_engine, "engine@trt-fp16": folder})
    assert str(caught.value) == "package.ovms serves OpenVINO IR and ONNX; engine@trt-fp16 is a TensorRT engine"
    assert not (tmp_path / "p" / "repository").exists()


def _trt_info() -> EngineInfo:
    return EngineInfo(
        backend="tensorrt",
        precision="fp16",
        inputs=(TensorInfo(name="input", dtype="float32", dims=(1, 3, 8, 8)),),
        outputs=(TensorInfo(name="out", dtype="float32", dims=(1, 4, 8, 8)),),
        toolchain={"tensorrt": "10.13.0.35"},
        device=EngineDevice(device="NVIDIA L4", compute_capability="8.9"),
        reproduce=("trtexec", "--onnx=model.onnx"),
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"shape": {ENGINE: {"input": "(1:16,3,8,8)"}}},
            rf"^{AT_RE}\.shape\.input: '\(1:16,3,8,8\)' dim 0 is 1:16, outside input input's 1\.\.8 \[1\.\.8,3,8,8\]$",
        ),
        (
            {"shape": {ENGINE: {"image": "(1,3,8,8)"}}},
            rf"^{AT_RE}\.shape\.image: model\.xml has no input 'image' \(it has: input\)$",
        ),
        (
            {"shape": {ENGINE: "(1,3,8,x)"}},
            rf"^{AT_RE}\.shape: '\(1,3,8,x\)': 'x' is not allowed .*: OVMS would ignore it$",
        ),
        (
            {"batch_size": {ENGINE: 16}},
            rf"^{AT_RE}\.batch_size: 16 is outside model\.xml's batch dim 1\.\.8 \(input input\)$",
        ),
        (
            {"shape": {ENGINE: "(1,3,8,8)"}, "batch_size": {ENGINE: 1}},
            r"^shape and batch_size both set for engine@openvino-fp32: OVMS ignores batch_size then$",
        ),
    ],
)
def test_every_check_runs_before_anything_is_written(
    tmp_path: Path, ov_engine: Path, params: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        package(tmp_path, {ENGINE: ov_engine}, **params)
    assert not (tmp_path / "repository").exists()


def test_two_members_under_one_name_are_refused(tmp_path: Path, ov_engine: Path, onnx_file: Path) -> None:
    with pytest.raises(ValueError, match=r"^engine@openvino-fp32 and simplify would both be served as 'm'; set"):
        package(tmp_path, {ENGINE: ov_engine, BARE: onnx_file}, names={ENGINE: "m", BARE: "m"})
    with pytest.raises(ValueError, match=r"^models: nothing to package"):
        package(tmp_path, {})


def test_params_are_validated() -> None:
    Params = PackageOvms.Params
    with pytest.raises(ValidationError, match=r"'my model' is not a model name \(a letter or digit, then"):
        Params.model_validate({"names": {"a": "my model"}})
    with pytest.raises(ValidationError, match=r"'auto' reloads the model at every new shape"):
        Params.model_validate({"shape": {"a": "auto"}})
    with pytest.raises(ValidationError, match=r"'auto' reloads the model"):
        Params.model_validate({"batch_size": {"a": "auto"}})
    for bad in ({"version": 0}, {"nireq": 0}, {"version": True}, {"smoke_cosine_min": 2}, {"nireqs": 1}):
        with pytest.raises(ValidationError):
            Params.model_validate(bad)
    assert all(f.description for f in Params.model_fields.values())
    assert (PackageOvms.packages, PackageOvms.extra, PackageOvms.deliverable) == (
        ("openvino", "jsonschema"),
        "serve",
        True,
    )
    assert PackageOvms.inputs["models"].many and PackageOvms.inputs["reference"].optional
    assert default_name("engine@openvino-fp32") == "engine_openvino_fp32" and default_name("a/b.onnx") == "a_b_onnx"


def test_the_schema_enters_the_key(tmp_path: Path) -> None:
    class Keys:
        recipe_dir = tmp_path

        def file_digest(self, path: Path) -> str:
            return f"digest of {Path(path).name}"

        def code_digest(self, ref: str, source: str | None = None) -> dict:
            return {}

    got = PackageOvms().fingerprint(PackageOvms.Params(), None, Keys())
    assert got == {"ovms_schema": "digest of config.schema.json"}
    assert set(PackageOvms().toolchain()) >= {"openvino", "jsonschema", "onnx", "onnxruntime"}


# -- OVMS's schema ---------------------------------------------------------------------------------------------------
REJECTED = {
    "unknown_top_level_key.json": "(top level): Additional properties are not allowed ('models' was unexpected)",
    "unknown_config_key.json": "model_config_list[0].config: Additional properties are not allowed "
    "('stateful' was unexpected)",
    "unknown_key_beside_config.json": "model_config_list[0]: Additional properties are not allowed "
    "('version' was unexpected) (and 1 more error)",
    "no_name.json": "model_config_list[0].config: 'name' is a required property",
    "wrong_type.json": "model_config_list[0].config.nireq: '4' is not of type 'integer'",
    "bad_version_policy.json": 'model_config_list[0].config.model_version_policy: {"newest": {"num_versions": 1}} '
    'is none of the forms OVMS accepts ({"all": ...} | {"specific": ...} | {"latest": ...})',
    "bad_version_number.json": "model_config_list[0].config.model_version_policy.specific.versions[1]: "
    "0 is less than the minimum of 1",
    "bad_shape.json": "model_config_list[0].config.shape: [1, 3, 224, 224] is none of the forms OVMS accepts "
    "(an object of strings | a string)",
    "bad_shape_value.json": "model_config_list[0].config.shape.input: [1, 3, 224, 224] is not of type 'string'",
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_each_class_of_schema_rejection_is_one_line(tmp_path: Path, name: str) -> None:
    text = (FIXTURES / "rejected" / name).read_text()
    expected = f"config.json: {REJECTED[name]}"
    assert schema_problem(json.loads(text)) == expected
    (tmp_path / "config.json").write_text(text)
    assert check_repository(tmp_path) == [expected]  # the schema's error alone: nothing else reads reliably


def test_every_rejection_fixture_has_its_message() -> None:
    assert sorted(p.name for p in (FIXTURES / "rejected").glob("*.json")) == sorted(REJECTED)


@pytest.mark.parametrize("path", sorted((FIXTURES / "accepted").glob("*.json")), ids=lambda p: p.stem)
def test_ovms_documented_configs_are_accepted(path: Path) -> None:
    config = json.loads(path.read_text())
    assert schema_problem(config) is None
    for wrapper in config["model_config_list"]:  # and their shapes parse as OVMS parses them
        shape = wrapper["config"].get("shape")
        for text in [shape] if isinstance(shape, str) else (shape or {}).values():
            if text != "auto":
                parse_shape(text)


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_shape_syntax_both_ways() -> None:
    assert shape_text(("1..8", 3, "?", "..8", "1..")) == "(1:8,3,-1,0:8,-1)"
    assert parse_shape(" (1, 1:10, -1) ") == ((1, 1), (1, 10), (0, None))
    for bad, why in [
        ("(1,3,x)", "'x' is not allowed"),
        ("(1,,3)", "dim '' is not a number"),
        ("(8:1)", "max must be above min"),
        ("(-2)", "a size is -1 \\(any\\) or >= 0"),
        ("1,3", "expected one parenthesised list"),
        ("(1:2:3)", "expected min:max"),
        ("(1..8)", "'.' is not allowed"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_shape(bad)


# -- a repository written by hand -------------------------------------------------------------------------------------
def two_inputs(path: Path) -> Path:
    """a[batch,4] + b[batch,4] -> out."""
    return save(
        model_of(
            [helper.make_node("Add", ["a", "b"], ["out"])],
            "add",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in ("a", "b")],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])],
            [],
        ),
        path,
    )


def _repo(root: Path, entries: list[dict], files: dict[str, Path | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}))
    for rel, source in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            (root / rel).write_bytes(source)
        else:
            shutil.copyfile(source, root / rel)
    return root


M = {"name": "m", "base_path": "m"}
Case = Callable[[Path], tuple[list[dict], dict[str, Any]]]
HAND_WRITTEN: dict[str, tuple[Case, str | None]] = {
    "clean": (lambda o: ([{**M, "shape": {"input": "(1:4,3,8,8)"}}], {"m/1/model.onnx": o}), None),
    "mediapipe_graph": (
        lambda o: ([M, {"name": "g", "base_path": "g"}], {"m/1/model.onnx": o, "g/graph.pbtxt": b""}),
        None,
    ),
    "one_file_base_path": (lambda o: ([{"name": "m", "base_path": "m/model.onnx"}], {"m/model.onnx": o}), None),
    "version_01": (
        lambda o: ([M], {"m/01/model.onnx": o}),
        f"{AT}.base_path: m/01/: OVMS reads it as version 1; name it 1",
    ),
    "version_v1": (
        lambda o: ([M], {"m/v1/model.onnx": o}),
        f"{AT}.base_path: m/v1/: OVMS skips it: a version folder is a number above 0",
    ),
    "no_version_folder": (
        lambda o: ([M], {"m/model.onnx": o}),
        f"{AT}.base_path: 'm' holds no version folder (<positive integer>/<model files>)",
    ),
    "absolute": (
        lambda o: ([{**M, "base_path": "/models/m"}], {"m/1/model.onnx": o}),
        f"{AT}.base_path: '/models/m' is not inside the repository (an absolute or cloud path)",
    ),
    "escapes": (
        lambda o: ([{**M, "base_path": "m/../../m"}], {"m/1/model.onnx": o}),
        f"{AT}.base_path: 'm/../../m' is not a folder inside the repository",
    ),
    "no_base_path": (
        lambda o: ([{"name": "m"}], {"m/1/model.onnx": o}),
        f"{AT}: no base_path: OVMS would serve the folder of config.json itself",
    ),
    "ir_without_bin": (
        lambda o: ([M], {"m/1/model.xml": b"<net/>"}),
        f"{AT}.base_path: m/1: model.xml has no model.bin beside it",
    ),
    "ir_and_onnx": (
        lambda o: ([M], {"m/1/model.xml": b"<net/>", "m/1/model.bin": b"", "m/1/model.onnx": o}),
        f"{AT}.base_path: m/1: holds an IR (model.xml) and model.onnx: OVMS serves the IR only",
    ),
    "two_onnx": (
        lambda o: ([M], {"m/1/a.onnx": o, "m/1/b.onnx": o}),
        f"{AT}.base_path: m/1: holds 2 .onnx files (a.onnx, b.onnx): OVMS loads any one",
    ),
    "missing_version": (
        lambda o: ([{**M, "model_version_policy": {"specific": {"versions": [1, 2]}}}], {"m/1/model.onnx": o}),
        f"{AT}.model_version_policy: version 2 has no folder (has: 1)",
    ),
    "duplicate_name": (
        lambda o: ([M, M], {"m/1/model.onnx": o}),
        "config.json: model_config_list[1].config.name: 'm' is also the name of model_config_list[0]: "
        "OVMS serves only the first",
    ),
    "bad_name": (
        lambda o: ([{**M, "name": "my model"}], {"m/1/model.onnx": o}),
        f"{AT}.name: 'my model' is not a model name (a letter or digit, then letters, digits, '_', '.' or '-')",
    ),
    "shape_rank": (
        lambda o: ([{**M, "shape": {"input": "(1,3,8)"}}], {"m/1/model.onnx": o}),
        f"{AT}.shape.input: '(1,3,8)' has 3 dims, input input has 4 [?,3,8,8]",
    ),
    "shape_outside": (
        lambda o: ([{**M, "shape": "(1,3,16,16)"}], {"m/1/model.onnx": o}),
        f"{AT}.shape: '(1,3,16,16)' dim 2 is 16, outside input input's 8 [?,3,8,8]",
    ),
    "anonymous_shape_of_two_inputs": (
        lambda o: ([{**M, "shape": "(1,4)"}], {"m/1/model.onnx": two_inputs(o.parent / "two.onnx")}),
        f"{AT}.shape: '(1,4)' names no input, which fits a model of one input; model.onnx has 2 (a, b): "
        "give one shape per input name",
    ),
    "batch_size_with_shape": (
        lambda o: ([{**M, "shape": {"input": "(1,3,8,8)"}, "batch_size": 2}], {"m/1/model.onnx": o}),
        f"{AT}.batch_size: OVMS ignores it when shape is set; put the batch in shape",
    ),
    "bad_batch_size": (
        lambda o: ([{**M, "batch_size": "0:4"}], {"m/1/model.onnx": o}),
        f"{AT}.batch_size: '0:4' is not a batch size (a number, min:max above 0, or -1): OVMS would ignore it",
    ),
}


@pytest.mark.parametrize("case", sorted(HAND_WRITTEN))
def test_a_hand_written_repository_is_checked_as_ovms_reads_it(tmp_path: Path, onnx_file: Path, case: str) -> None:
    make, expected = HAND_WRITTEN[case]
    source = tmp_path / "src" / "model.onnx"  # the cases may write other models beside it
    source.parent.mkdir()
    shutil.copyfile(onnx_file, source)
    entries, files = make(source)
    problems = check_repository(_repo(tmp_path / "repo", entries, files))
    assert problems == ([] if expected is None else [expected])


def test_a_repository_without_a_readable_config(tmp_path: Path) -> None:
    assert check_repository(tmp_path) == [f"config.json: missing from {tmp_path}"]
    (tmp_path / "config.json").write_text('{"model_config_list": [,]}')
    assert check_repository(tmp_path) == ["config.json: not JSON (Expecting value at line 1, column 24)"]


def test_the_written_repository_is_its_own_evidence(tmp_path: Path, ov_engine: Path) -> None:
    """Edit the written repository the way hands do; the same check the stage ran says what broke."""
    package(tmp_path, {ENGINE: ov_engine})
    repo = tmp_path / "repository"
    (repo / "engine_openvino_fp32/1/model.bin").unlink()
    assert check_repository(repo) == [f"{AT}.base_path: engine_openvino_fp32/1: model.xml has no model.bin beside it"]


def test_params_naming_a_member_the_recipe_does_not_connect_are_recipe_errors(tmp_path: Path) -> None:
    """`names`, `shape` and `batch_size` are keyed by the labels of `models`: a typo fails when the recipe loads, with
    its line, before any ov_engine is built."""
    from pipeline.errors import RecipeError
    from pipeline.recipe.load import load_recipe

    (tmp_path / "m.onnx").write_bytes(b"")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "stages:\n  ovms:\n    uses: package.ovms\n    inputs: {models: [m.onnx]}\n"
        "    with:\n      shape: {m.onnx: '(1,3)'}\n      batch_size: {n.onnx: 1}\n"
    )
    with pytest.raises(RecipeError) as error:
        load_recipe(recipe)
    assert str(error.value).endswith(
        "r.yaml:7: stages.ovms.with.batch_size.n.onnx: 'n.onnx' is not connected to models (members: m.onnx)"
    )
