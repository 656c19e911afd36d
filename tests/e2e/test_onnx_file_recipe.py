"""A recipe that starts from an ONNX file (no export stage), as the README shows: a fully convolutional net
whose file names its dynamic dims `height`/`width` while the recipe calls them `h`/`w`, simplified, built for
OpenVINO, quantized and validated on images of three sizes through the CLI, then rerun all cached."""

from __future__ import annotations

import json

import onnx
import pytest
from graphs import MIXED_SOURCE, fcn  # tests/stages/, on sys.path for every test (tests/conftest.py)
from harness import Project

RECIPE = """\
name: fcn_from_onnx
model:                                   # no factory: the stages start from fcn.onnx
  tensors:
    x: {shape: [batch, 3, h, w]}         # by position: the file calls dims 2 and 3 height and width
  dims:
    batch: {min: 1, opt: 2, max: 8}
    h: {min: 4, opt: 8, max: 16}
    w: {min: 4, opt: 8, max: 16}
data:
  calib: {kind: python, python: "images_t.py:images"}
  val: {kind: python, python: "images_t.py:images", kwargs: {seed: 1}}
stages:
  simplify: {uses: onnx.simplify, inputs: {model: fcn.onnx}}
  openvino: {uses: build.openvino, from: simplify, with: {inference_precision: f32}}
  quant:    {uses: quantize.nncf, inputs: {model: simplify, data: data.calib}, with: {subset_size: 10}}
  check:
    uses: validate
    inputs: {candidate: openvino, reference: simplify, data: data.val}
    with: {throughput_batches: [1], min_seconds: 0.2}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    made = Project.at(tmp_path_factory.mktemp("onnxfile"))
    model = fcn()
    for info in (model.graph.input[0], model.graph.output[0]):
        for dim, name in zip(info.type.tensor_type.shape.dim[2:], ("height", "width")):
            dim.dim_param = name
    onnx.save(model, made.root / "fcn.onnx")
    (made.root / "images_t.py").write_text(MIXED_SOURCE)
    (made.root / "recipe.yaml").write_text(RECIPE)
    return made


def test_a_recipe_starting_from_an_onnx_file_builds_validates_and_caches(project: Project) -> None:
    proc, record = project.run_json("recipe.yaml", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {s["stage"]: s for s in record["stages"]}
    assert all(rows[s]["status"] == "ran" for s in ("simplify", "openvino", "quant", "check"))
    views = project.cache / "fcn_from_onnx"
    simplified = onnx.load(str(views / "simplify" / "model.onnx"))
    assert [d.dim_param or d.dim_value for d in simplified.graph.input[0].type.tensor_type.shape.dim] == [
        "batch",
        3,
        "height",
        "width",
    ]  # the file's own names survive; the recipe's apply by position
    engine = json.loads((views / "openvino" / "model" / "engine.json").read_text())
    assert engine["inputs"][0] == {
        "name": "x",
        "dtype": "float32",
        "dims": ["1..8", 3, "4..16", "4..16"],  # the
        "min": None,
        "opt": None,
        "max": None,
    }  # recipe's ranges
    quant = json.loads((views / "quant" / "quantize.json").read_text())
    assert quant["calibration"]["samples"] == 10 and quant["warnings"] == []
    report = json.loads((views / "check" / "report.json").read_text())
    assert report["passed"] is True

    again, record = project.run_json("recipe.yaml", timeout=900)
    assert again.returncode == 0 and {s["status"] for s in record["stages"]} == {"cached"}
