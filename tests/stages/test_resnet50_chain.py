"""The full-size check: torchvision ResNet50 through export -> simplify -> surgery, with both exporters.

The recipe's batch opt is 8; the test uses 2 to keep the self-checks quick.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from harness import REPO, run_stage

from stages.export_onnx import ExportOnnx
from stages.onnx_simplify import OnnxSimplify
from stages.onnx_surgery import OnnxSurgery
from stages.runtimes import pytorch as models
from stages.runtimes.onnx.io import compare_outputs, run_onnx, session_from_onnx

RESNET50 = {
    "factory": "torchvision.models:resnet50",
    "kwargs": {"weights": None},
    "seed": 0,
    "tensors": {"input": {"shape": ["batch", 3, 224, 224]}},
    "outputs": ["logits"],
    "dims": {"batch": {"min": 1, "opt": 2, "max": 32}},
}


def test_recipe_loads(repo: Path) -> None:
    from pipeline.recipe.load import load_recipe

    recipe = load_recipe(repo / "recipes" / "resnet50_fp32.yaml")
    assert [s.kind.kind for s in recipe.stages.values()] == ["export.onnx", "onnx.simplify", "onnx.surgery"]
    assert recipe.model.shape("input", "opt") == (8, 3, 224, 224)


@pytest.mark.slow
def test_resnet50_export_simplify_surgery(tmp_path: Path) -> None:
    import torch

    from pipeline.schema import ModelSpec

    exported = run_stage(ExportOnnx, tmp_path / "export", model=RESNET50, recipe_dir=REPO)
    assert exported["exporter"] == "dynamo" and 90 < exported["size_mb"] < 110
    assert not any(p.name.endswith(".data") for p in (tmp_path / "export").iterdir())  # one file, weights inline
    run_stage(OnnxSimplify, tmp_path / "simplify", inputs={"model": tmp_path / "export" / "model.onnx"}, model=RESNET50)
    run_stage(
        OnnxSurgery,
        tmp_path / "surgery",
        {"ops": ["cleanup", "toposort"]},
        inputs={"model": tmp_path / "simplify" / "model.onnx"},
        model=RESNET50,
    )
    final = tmp_path / "surgery" / "model.onnx"
    proto = onnx.load(final, load_external_data=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    spec = ModelSpec.model_validate(RESNET50)
    module = models.module_from_spec(spec, REPO)
    x = np.random.default_rng(7).standard_normal((3, 3, 224, 224)).astype(np.float32)  # batch 3: not the traced size
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = run_onnx(session_from_onnx(final), {"input": x})
    compare_outputs({"logits": expected}, got, atol=1e-4, rtol=1e-3)

    legacy = run_stage(ExportOnnx, tmp_path / "torchscript", {"dynamo": False}, model=RESNET50, recipe_dir=REPO)
    assert legacy["exporter"] == "torchscript"
    got = run_onnx(session_from_onnx(tmp_path / "torchscript" / "model.onnx"), {"input": x})
    compare_outputs({"logits": expected}, got, atol=1e-4, rtol=1e-3)
