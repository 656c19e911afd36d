"""recipes/resnet50_fleet.yaml: TensorRT FP16/INT8 for four GPU types as a matrix, each variant keyed by and
placed on its GPU, and on a machine without GPUs the OpenVINO engine packaged alone, saying what was left out.
The packaging of the TensorRT plans themselves is tested on engine.json records (tests/stages/packaging)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import RECIPES, Project, quick_timing, rows

from pipeline.cache import Cache
from pipeline.recipe.load import load_recipe
from pipeline.run.plan import Planner
from pipeline.status import Status

GPUS = ("T4", "L4", "A100", "H100")
TRT = [f"trt@{p}-{g}" for p in ("fp16", "int8") for g in GPUS]


def test_every_variant_is_keyed_by_and_placed_on_its_gpu(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPES / "resnet50_fleet.yaml")
    assert list(recipe.matrices["trt"]) == TRT
    for name in TRT:
        gpu = name.rsplit("-", 1)[1]
        for stage in (name, name.replace("trt@", "check_trt@")):  # the check takes its engine's target
            node = recipe.stages[stage]
            assert node.kind().target(node.params).accelerator == gpu, stage
    assert str(recipe.stages["trt@int8-L4"].inputs["model"]) == "quant_trt.model"
    # a cluster with only L4 nodes: the L4 variants are placed, the others cannot run there
    cluster = Planner(recipe, Cache(tmp_path / "cache"), placement=lambda gpu: None if gpu == "L4" else f"no {gpu}")
    reasons = {name: cluster.unmet(name) for name in TRT}
    assert reasons == {name: None if name.endswith("-L4") else f"no {name.rsplit('-', 1)[1]}" for name in TRT}


@pytest.mark.slow
def test_without_gpus_the_package_holds_what_was_built_and_says_what_it_left_out(tmp_path: Path) -> None:
    """The recipe as written, on a small network (ResNet18 at 32x32, few samples): what runs on CPU runs."""
    project = Project.copy(tmp_path, "resnet50_fleet.yaml", source=RECIPES)
    small = [
        "--set",
        "model.factory=torchvision.models:resnet18",
        "--set",
        "model.tensors.input.shape=[batch, 3, 32, 32]",
        "--set",
        "data.calib.count=8",
        "--set",
        "data.val.count=8",
        "--set",
        "stages.quant_ov.with.subset_size=8",
        *quick_timing("check_openvino"),
    ]
    proc, record = project.run_json("resnet50_fleet.yaml", *small, "--skip-unavailable", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = rows(record)
    assert {r[n]["status"] for n in TRT} == {Status.UNAVAILABLE}
    assert r["triton"]["status"] == "ran" and r["check_openvino"]["status"] == "ran"
    precision, note = r["triton"]["warnings"]  # the stage's own, then the run's note of what it went without
    assert precision.startswith("resnet50_openvino_int8 runs at the CPU's default precision, not the f32")
    assert note.startswith("built without trt@fp16-T4, ") and all(n in note for n in TRT)
    report = json.loads(Path(r["triton"]["outputs"]["report"]).read_text())
    assert [m["name"] for m in report["models"]] == ["resnet50_openvino_int8"]
