"""The packagers' smoke test: one seeded request through the packaged file, checked and compared with the float
reference; each way a packaged file can be wrong is one line naming the served model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from graphs import model_of, save
from onnx import TensorProto, helper

from stages.packaging.members import Member, member_from
from stages.packaging.smoke import SmokeResult, cosine_similarity, smoke_request
from stages.runtimes import engine_info
from stages.runtimes.engine_info import EngineDevice, EngineInfo, TensorInfo

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

REQUEST = {"input": (2, 3, 8, 8)}
DTYPES = {"input": "float32"}


def unary(op: str, path: Path, input_name: str = "input", output: str = "out") -> Path:
    """input[batch,3,8,8] -op-> out: the same I/O as conv_bn with other numbers (or other names)."""
    return save(
        model_of(
            [helper.make_node(op, [input_name], [output])],
            op.lower(),
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, 8, 8])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", 3, 8, 8])],
            [],
        ),
        path,
    )


def smoke(member: Member, reference: Path | None, **kw) -> SmokeResult:
    files = kw.pop("files", member.files)
    return smoke_request("served", member, files, kw.pop("shapes", REQUEST), DTYPES, reference, 0.99, **kw)


def test_an_openvino_engine_runs_with_its_precision_and_agrees_with_the_reference(
    ov_engine: Path, onnx_file: Path
) -> None:
    member = member_from("engine@openvino-fp32", ov_engine)
    result = smoke(member, onnx_file)
    assert (result.model, result.ran, result.skipped, result.runtime) == ("served", True, None, "openvino f32")
    out = result.outputs["out"]
    assert out["shape"] == [2, 4, 8, 8] and out["dtype"] == "float32"
    assert out["cosine"] > 0.99999 and out["max_abs"] < 1e-4
    row = result.row()
    assert json.loads(json.dumps(row)) == row and row["request"] == {"input": [2, 3, 8, 8]}
    assert smoke(member, onnx_file).row() == row  # seeded: the same request, the same figures


def test_a_bare_onnx_runs_in_onnxruntime_or_openvino(onnx_file: Path) -> None:
    member = member_from("simplify", onnx_file)
    assert member.backend == "onnxruntime"
    by_ort = smoke(member, onnx_file)
    assert by_ort.runtime == "onnxruntime" and by_ort.outputs["out"]["cosine"] == 1.0
    assert by_ort.outputs["out"]["max_abs"] == 0.0
    by_ov = smoke(member, onnx_file, runtime="openvino")  # what OVMS does with an .onnx
    assert by_ov.runtime == "openvino f32" and by_ov.outputs["out"]["cosine"] > 0.99999


def test_without_a_reference_it_still_loads_runs_and_checks(ov_engine: Path) -> None:
    result = smoke(member_from("e", ov_engine), None)
    assert result.ran and result.outputs["out"] == {
        "shape": [2, 4, 8, 8],
        "dtype": "float32",
        "cosine": None,
        "max_abs": None,
    }


def test_a_file_whose_input_is_named_otherwise_is_caught(tmp_path: Path, onnx_file: Path) -> None:
    """The config (and the member) say `input`; the file packaged is another model, whose input is `image`."""
    member = member_from("simplify", onnx_file)
    wrong = unary("Relu", tmp_path / "other.onnx", input_name="image")
    for runtime in ("onnxruntime", "openvino"):
        with pytest.raises(
            ValueError,
            match=r"^served: input 'input' is declared, but the model file has no such "
            r"input \(it has: image\)$",
        ):
            smoke(member, onnx_file, files=[wrong], runtime=runtime)


def test_a_declared_dtype_the_file_does_not_take_is_caught(onnx_file: Path, ov_engine: Path) -> None:
    for member in (member_from("o", onnx_file), member_from("e", ov_engine)):
        with pytest.raises(
            ValueError,
            match=r"^served: input 'input' is declared float16, but the model file takes "
            r"float32$",
        ):
            smoke_request("served", member, member.files, REQUEST, {"input": "float16"}, None, 0.99)


def test_a_file_that_does_not_load_is_one_line(tmp_path: Path, onnx_file: Path) -> None:
    member = member_from("o", onnx_file)
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"^served: ONNX Runtime cannot load model.onnx: ") as caught:
        smoke(member, None, files=[junk])
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"^served: OpenVINO cannot load model.onnx: ") as caught:
        smoke(member, None, files=[junk], runtime="openvino")
    assert "\n" not in str(caught.value)


def test_a_request_outside_the_engine_is_one_line(ov_engine: Path) -> None:
    with pytest.raises(ValueError, match=r"^served: the request input \[9, 3, 8, 8\] failed in openvino f32: "):
        smoke(member_from("e", ov_engine), None, shapes={"input": (9, 3, 8, 8)})


def test_an_output_that_is_not_finite_is_caught(tmp_path: Path) -> None:
    log = unary("Log", tmp_path / "log.onnx")  # log of normal samples: NaN for every negative one
    with pytest.raises(ValueError, match=r"^served: output 'out' is not finite \(\d+ NaN, \d+ inf of 384\)$"):
        smoke(member_from("log", log), None)


def test_an_output_of_another_shape_than_declared_is_caught(onnx_file: Path) -> None:
    member = member_from("o", onnx_file)
    claims = dataclasses.replace(member, outputs=(TensorInfo(name="out", dtype="float32", dims=("?", 5, 8, 8)),))
    with pytest.raises(
        ValueError,
        match=r"^served: output 'out' came back \[2, 4, 8, 8\], but the model declares "
        r"\[\?, 5, 8, 8\]$",
    ):
        smoke(claims, None)
    ranged = dataclasses.replace(member, outputs=(TensorInfo(name="out", dtype="float32", dims=("3..8", 4, 8, 8)),))
    with pytest.raises(ValueError, match=r"came back \[2, 4, 8, 8\], but the model declares \[3..8, 4, 8, 8\]$"):
        smoke(ranged, None)


def test_disagreeing_with_the_reference_fails_with_the_figures(tmp_path: Path) -> None:
    relu, neg = unary("Relu", tmp_path / "relu.onnx"), unary("Neg", tmp_path / "neg.onnx")
    with pytest.raises(
        ValueError,
        match=r"^served: output 'out' cosine -0\.\d{4} < 0\.99 against neg\.onnx "
        r"\(max abs diff [\d.]+\)$",
    ):
        smoke(member_from("relu", relu), neg)
    other = unary("Relu", tmp_path / "named.onnx", output="logits")
    with pytest.raises(
        ValueError,
        match=r"reference named\.onnx has no output of the model's names \(model: out; "
        r"reference: logits\)$",
    ):
        smoke(member_from("relu", relu), other)
    renamed = unary("Relu", tmp_path / "in.onnx", input_name="image")
    with pytest.raises(ValueError, match=r"reference in\.onnx takes input\(s\) image the request does not have"):
        smoke(member_from("relu", relu), renamed)


def test_a_tensorrt_engine_is_skipped_with_the_reason_where_tensorrt_is_missing(tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt imports here")
    except ImportError:
        pass
    folder = tmp_path / "trt"
    folder.mkdir()
    (folder / "model.engine").write_bytes(b"never run")
    engine_info.write(trt_info(), folder)
    result = smoke(member_from("engine@trt", folder), None)
    assert (result.ran, result.skipped, result.outputs) == (False, "TensorRT is not installed here", {})
    assert result.row()["skipped"] == "TensorRT is not installed here"


def trt_info() -> EngineInfo:
    """engine.json of a TensorRT ov_engine (fabricated: nothing here runs it)."""
    dims = ("1..8", 3, 8, 8)
    return EngineInfo(
        backend="tensorrt",
        precision="fp16",
        inputs=(
            TensorInfo(name="input", dtype="float32", dims=dims, min=(1, 3, 8, 8), opt=(2, 3, 8, 8), max=(8, 3, 8, 8)),
        ),
        outputs=(TensorInfo(name="out", dtype="float32", dims=("1..8", 4, 8, 8)),),
        toolchain={"tensorrt": "10.13.0.35"},
        device=EngineDevice(device="NVIDIA L4", compute_capability="8.9"),
        reproduce=("trtexec", "--onnx=model.onnx"),
    )


def test_cosine_similarity() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert cosine_similarity(a, a) == pytest.approx(1.0) and cosine_similarity(a, -a) == pytest.approx(-1.0)
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0 and cosine_similarity(np.zeros(3), np.ones(3)) == 0.0


def test_the_label_names_the_precision_openvino_took(ov_engine: Path) -> None:
    """A config asking for a precision this CPU lacks runs in another (as the server would): the label says so."""
    import openvino as ov

    if "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU runs f16")
    result = smoke(member_from("e", ov_engine), None, inference_precision="f16")
    assert result.runtime is not None and result.runtime.endswith(" (asked f16)")
    assert result.runtime.split()[1] in ("f32", "bf16")


def test_a_request_cut_from_real_samples_takes_the_first_ones_and_refuses_another_shape() -> None:
    """With a `data` input the smoke request is the recipe's own samples (a quantized ov_engine is judged on data like
    its calibration set), cut or repeated to the config's batch, in its dtype; a sample of another shape is an
    error naming the model and the input, not a silent reshape."""
    import numpy as np

    from stages.packaging.smoke import request_from

    batch = {"input": np.arange(3 * 2 * 2, dtype=np.float64).reshape(3, 2, 2)}
    one = request_from(batch, "input", (1, 2, 2), "float32", "m")
    assert one.dtype == np.float32 and one.shape == (1, 2, 2) and (one[0] == batch["input"][0]).all()
    five = request_from(batch, "input", (5, 2, 2), "float32", "m")
    assert [int(x[0, 0]) for x in five] == [0, 4, 8, 0, 4]  # samples 0, 1, 2, 0, 1
    with pytest.raises(ValueError, match=r"^m: input 'input': the smoke data's samples are \[3, 2, 2\], the request"):
        request_from(batch, "input", (1, 4, 4), "float32", "m")
    with pytest.raises(ValueError, match=r"^m: the smoke data has no input 'image' \(it has input\)"):
        request_from(batch, "image", (1, 2, 2), "float32", "m")
