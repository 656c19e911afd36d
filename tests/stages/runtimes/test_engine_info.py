"""_engine_info: engine.json round-trips, and every way it can be wrong is one line naming the file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness import REPO
from pydantic import ValidationError

from stages.runtimes import engine_info as E
from stages.runtimes.engine_info import EngineDevice, EngineInfo, TensorInfo

INFO = EngineInfo(
    backend="tensorrt",
    precision="int8",
    device=EngineDevice(device="NVIDIA L4", compute_capability="8.9"),
    toolchain={"tensorrt": "10.13.0.35", "cuda": "12.8"},
    reproduce=("trtexec", "--onnx=model.onnx", "--int8 x"),
    inputs=(
        TensorInfo(
            name="input",
            dtype="float32",
            dims=("1..32", 3, 224, 224),
            min=(1, 3, 224, 224),
            opt=(8, 3, 224, 224),
            max=(32, 3, 224, 224),
        ),
        TensorInfo(name="ids", dtype="int64", dims=(1, 7)),
    ),
    outputs=(TensorInfo(name="logits", dtype="float16", dims=("?", 1000)),),
    details={"layers": {"Layers": ["conv1"]}, "profiles": {"input": {"min": [1, 3, 224, 224]}}},
)


def test_round_trip_through_a_directory_or_a_file(tmp_path: Path) -> None:
    path = E.write(INFO, tmp_path)
    assert path == tmp_path / "engine.json" and [p.name for p in tmp_path.iterdir()] == ["engine.json"]  # no temp
    (tmp_path / "model.engine").write_bytes(b"\0")
    raw = json.loads(path.read_text())
    assert raw["schema"] == E.SCHEMA and raw["inputs"][0]["dims"] == ["1..32", 3, 224, 224]
    assert list(raw) == sorted(raw)  # sorted keys: the same engine writes the same bytes
    for where in (tmp_path, path, tmp_path / "model.engine"):  # the dir, the file itself, or beside the engine
        assert E.read(where) == INFO
    again = E.write(INFO, tmp_path / "copy.json")
    assert again.read_bytes() == path.read_bytes() and E.read(again) == INFO  # a .json file given is the sidecar
    assert again.stat().st_mode & 0o777 == 0o644
    assert E.read(tmp_path).input_names == ["input", "ids"] and INFO.output_names == ["logits"]
    assert INFO.reproduce_line == "trtexec --onnx=model.onnx '--int8 x'"
    assert INFO.inputs[0].dynamic and not INFO.inputs[1].dynamic and str(INFO.device) == "NVIDIA L4 (sm 8.9)"
    assert "details" not in INFO.as_json(details=False) and INFO.as_json()["details"]["layers"]
    assert E.parse(INFO.as_json(details=False), "x") == INFO.model_copy(update={"details": {}})


def test_an_engine_json_as_written_before_still_loads(tmp_path: Path) -> None:
    """engine.json's field names are its format: `device` keeps its keys whatever the class is called."""
    written = {
        "backend": "tensorrt",
        "details": {},
        "device": {"accelerator": "L4", "compute_capability": "8.9", "device": "NVIDIA L4"},
        "inference_precision": None,
        "inputs": [{"dims": [1, 3], "dtype": "float32", "max": None, "min": None, "name": "x", "opt": None}],
        "outputs": [{"dims": [1, 10], "dtype": "float16", "max": None, "min": None, "name": "y", "opt": None}],
        "precision": "fp16",
        "reproduce": ["trtexec", "--onnx=model.onnx"],
        "schema": 1,
        "toolchain": {"tensorrt": "10.13.0.35"},
    }
    (tmp_path / "engine.json").write_text(json.dumps(written))
    info = E.read(tmp_path)
    assert (info.device.device, info.device.compute_capability, info.device.accelerator) == ("NVIDIA L4", "8.9", "L4")
    assert info.as_json() == written  # and it is written back key for key


def test_the_model_is_frozen_and_strict() -> None:
    with pytest.raises(ValidationError):
        INFO.precision = "fp32"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        EngineInfo.model_validate({**INFO.as_json(), "gpu": "L4"})
    with pytest.raises(ValidationError, match="not a numpy dtype name"):
        TensorInfo(name="x", dtype="f32", dims=(1,))
    with pytest.raises(ValidationError, match="dynamic dim 'batch'"):
        TensorInfo(name="x", dtype="float32", dims=("batch", 3))
    with pytest.raises(ValidationError, match="not -1"):
        TensorInfo(name="x", dtype="float32", dims=(-1, 3))
    with pytest.raises(ValidationError, match="min, opt and max go together"):
        TensorInfo(name="x", dtype="float32", dims=("1..8", 3), min=(1, 3), opt=(2, 3))
    with pytest.raises(ValidationError, match="rank"):
        TensorInfo(name="x", dtype="float32", dims=("1..8", 3), min=(1,), opt=(2,), max=(8,))
    assert TensorInfo(name="x", dtype="bfloat16", dims=None).dynamic  # dynamic rank
    for dims in (("1..",), ("..8",), ("?",), (0,)):
        TensorInfo(name="x", dtype="bool", dims=dims)


def test_numpy_dtype_names_are_numpys_own() -> None:
    assert all(np.dtype(name).name == name for name in E.NUMPY_DTYPES)
    from stages.runtimes.dtypes import ELEMENT_TYPES, NON_NUMPY_NAMES

    assert {t.name for t in ELEMENT_TYPES if t.numpy is not None} <= E.NUMPY_DTYPES  # every type the one table knows
    # the names of the types numpy lacks are the table's (kept apart here: this module imports no numpy)
    assert E.EXTRA_DTYPES == NON_NUMPY_NAMES


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"no engine.json \(in or beside it\)"),
        (
            "{not json",
            r"engine.json: not JSON \(Expecting property name enclosed in double quotes at line 1, column 2\)",
        ),
        ("[1, 2]", r"engine.json: expected a JSON object, got list"),
        (
            '{"backend": "openvino", "inference_precision": "f32"}',
            r"engine.json: no schema version: written before engine.json was typed \(schema 1\); rebuild the engine",
        ),
        ("SCHEMA2", r"engine.json: schema: this version reads schema 1, not 2"),
        ("NO_DEVICE", r"engine.json: device: Field required"),
        ("BAD_DTYPE", r"engine.json: inputs.0.dtype: 'FLOAT' is not a numpy dtype name \(expected one of .*\)"),
        (
            "TWO_ERRORS",
            r"engine.json: backend: Input should be 'openvino', 'tensorrt' or 'onnxruntime' \(and 1 more error\)$",
        ),
    ],
)
def test_every_bad_engine_json_is_one_line_naming_the_file(tmp_path: Path, content: str | None, message: str) -> None:
    good = INFO.as_json()
    variants = {
        "SCHEMA2": {**good, "schema": 2},
        "NO_DEVICE": {k: v for k, v in good.items() if k != "device"},
        "BAD_DTYPE": {**good, "inputs": [{**good["inputs"][0], "dtype": "FLOAT"}]},
        "TWO_ERRORS": {**good, "precision": "int4", "backend": "mxnet"},
    }
    if content is not None:
        (tmp_path / "engine.json").write_text(json.dumps(variants[content]) if content in variants else content)
    with pytest.raises(ValueError) as caught:
        E.read(tmp_path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(str(tmp_path)), text
    assert re.search(message, text), text


def test_sidecar_and_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert E.sidecar(tmp_path) is None and E.sidecar(tmp_path / "model.xml") is None
    E.write(INFO, tmp_path)
    before = (tmp_path / "engine.json").read_bytes()

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(E.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        E.write(INFO.model_copy(update={"precision": "fp16"}), tmp_path)
    assert (tmp_path / "engine.json").read_bytes() == before  # the old file intact, no temp left behind
    assert [p.name for p in tmp_path.iterdir()] == ["engine.json"]


def test_the_module_imports_only_pydantic_and_the_standard_library() -> None:
    code = (
        "import sys; import stages.runtimes.engine_info; "
        "print(sorted({'numpy', 'onnx', 'openvino', 'tensorrt', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
