"""Which format a path holds and how a model's inputs meet the recipe (no framework needed): every wrong or
missing file is one line naming the input and the file, and a dim the model fixes must agree with the recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.schema import ModelSpec
from stages.frontends.formats import FormatError, detect
from stages.frontends.ports import Port, align, bind_inputs, output_names

SPEC = ModelSpec.model_validate(
    {
        "tensors": {"input": {"shape": ["batch", 8, 8, 1]}},
        "dims": {"batch": {"min": 1, "opt": 4, "max": 16}},
        "outputs": ["logits"],
    }
)


def _file(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_each_format_is_told_from_its_name_and_first_bytes(tmp_path: Path) -> None:
    _file(tmp_path / "sm" / "saved_model.pb", b"\x08\x01")
    assert detect(tmp_path / "sm").format == "savedmodel"
    assert detect(_file(tmp_path / "m.keras", b"PK\x03\x04rest")).format == "keras"
    assert detect(_file(tmp_path / "m.h5", b"\x89HDF\r\n\x1a\nrest")).format == "keras"
    assert detect(_file(tmp_path / "m.tflite", b"\x1c\x00\x00\x00TFL3rest")).format == "tflite"
    pd = _file(tmp_path / "pd" / "net.pdmodel")
    _file(tmp_path / "pd" / "net.pdiparams")
    _file(tmp_path / "pd" / "net.pdiparams.info")
    by_file, by_dir = detect(pd), detect(tmp_path / "pd")
    assert by_file == by_dir and by_file.format == "paddle" and by_file.params == tmp_path / "pd" / "net.pdiparams"


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("gone.keras", None, "no such file or directory"),
        ("model.pt", b"x", "unknown model format; expected a TensorFlow SavedModel directory"),
        ("net.pdmodel", b"x", "needs its weights net.pdiparams beside it"),
        ("net.pdiparams", b"x", "the weights of a PaddlePaddle model"),
        ("fake.tflite", b"\x1c\x00\x00\x00NOPE", "not a TFLite flatbuffer"),
        ("fake.keras", b"text", "not a Keras 3 .keras file"),
        ("fake.h5", b"text", "not an HDF5 file"),
        ("model.onnx", b"x", "already ONNX"),
        ("saved_model.pb", b"x", "give the SavedModel's directory"),
    ],
)
def test_a_wrong_or_missing_file_is_one_line_naming_the_input(
    tmp_path: Path, name: str, data: bytes | None, says: str
) -> None:
    path = tmp_path / name if data is None else _file(tmp_path / name, data)
    with pytest.raises(FormatError) as caught:
        detect(path)
    message = str(caught.value)
    assert message.startswith(f"input model ({name}): ") and says in message and "\n" not in message


def test_a_folder_in_no_format_lists_what_it_holds(tmp_path: Path) -> None:
    _file(tmp_path / "stuff" / "weights.npy")
    with pytest.raises(FormatError, match=r"neither a TensorFlow SavedModel .* has: weights.npy$"):
        detect(tmp_path / "stuff")
    _file(tmp_path / "lone" / "net.pdmodel")
    with pytest.raises(FormatError, match="net.pdmodel has no weights net.pdiparams beside it"):
        detect(tmp_path / "lone")


def test_inputs_bind_by_name_without_a_tflite_suffix_and_take_the_recipe_ranges() -> None:
    (bound,) = bind_inputs([Port("serving_default_input:0", "float32", (None, 8, 8, 1))], SPEC)
    assert bound.name == "input" and bound.dims == (("batch", 1, 16), 8, 8, 1) and bound.opt == (4, 8, 8, 1)
    assert bound.shape_or_none() == (None, 8, 8, 1) and bound.dim_names() == {0: "batch"}
    (by_position,) = bind_inputs([Port("x", "float32", None)], SPEC)  # one input each: its name does not matter
    assert by_position.port.name == "x" and by_position.name == "input"


@pytest.mark.parametrize(
    ("ports", "says"),
    [
        (
            [Port("input", "float32", (1, 8, 8, 1))],
            r"dim 0 is fixed at 1 in the model \[1,8,8,1\], the recipe asks batch",
        ),
        ([Port("input", "int64", (None, 8, 8, 1))], "input input is int64 in the model, float32 in model.tensors"),
        ([Port("input", "float32", (None, 64))], "rank 2 in the model"),
        ([Port("a", "float32", (None, 8, 8, 1)), Port("b", "float32", (None, 8, 8, 1))], "do not match model.tensors"),
    ],
)
def test_a_model_that_disagrees_with_the_recipe_is_one_line(ports: list[Port], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        bind_inputs(ports, SPEC)


def test_without_model_tensors_inputs_must_be_static() -> None:
    (bound,) = bind_inputs([Port("x", "float32", (2, 3))], None)
    assert bound.name == "x" and bound.opt == (2, 3)
    with pytest.raises(ValueError, match=r"input x has unknown dims \['\?', 3\]; declare the model's inputs"):
        bind_inputs([Port("x", "float32", (None, 3))], None)


def test_outputs_take_the_recipe_names_and_the_reference_follows_them() -> None:
    assert output_names(["output_0"], SPEC) == ["logits"]
    assert output_names(["output_0"], None) == ["output_0"]
    with pytest.raises(ValueError, match="the model has 2 outputs"):
        output_names(["a", "b"], SPEC)
    ref = {"a": np.zeros(1), "b": np.ones(1)}
    assert align(ref, [{"b", "b:0"}, {"a"}], ["first", "second"])["first"][0] == 1.0  # by name, not position
    assert align(ref, [{"x"}, {"y"}], ["first", "second"])["first"][0] == 0.0  # no name kept: by position
