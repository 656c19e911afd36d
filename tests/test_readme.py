"""The README stays true: its stage reference is current and its quickstart recipe runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.recipe.registry import Registry
from pipeline.report.reference import sections_reference, stage_reference
from stages.validation.gates import gate_reference

REPO = Path(__file__).resolve().parents[1]


def readme_with_reference(text: str) -> str:
    """The README with its generated blocks (recipe sections, stage kinds) made anew from the code."""
    blocks = (("sections", sections_reference()), ("stages", stage_reference(Registry())), ("gates", gate_reference()))
    for name, block in blocks:
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        assert begin in text and end in text, f"README lacks {begin}"
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{block}\n{end}", text, flags=re.S)
    return text


def test_references_are_current() -> None:
    text = (REPO / "README.md").read_text()
    assert text == readme_with_reference(text), "README reference is stale: run `make readme`"


def test_readme_opens_with_the_two_commands() -> None:
    head = (REPO / "README.md").read_text().split("## ")[0]
    assert "make engines" in head and "make test" in head


@pytest.mark.slow
def test_quickstart_recipe_runs_then_is_cached(tmp_path: Path) -> None:
    """The quickstart's recipe, kept small with --set (ResNet18 instead of 50), through the real CLI."""
    env = {**os.environ, "PIPELINE_CACHE": str(tmp_path / "cache")}
    recipe = tmp_path / "resnet50_fp32.yaml"
    recipe.write_text((REPO / "recipes" / "resnet50_fp32.yaml").read_text())
    small = ["--set", "model.factory=torchvision.models:resnet18", "--set", "model.dims.batch.opt=2"]
    cmd = [sys.executable, "-m", "pipeline.cli.main", "run", str(recipe), *small, "--json"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert [s["status"] for s in json.loads(first.stdout)["stages"]] == ["ran", "ran", "ran"]
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert [s["status"] for s in json.loads(second.stdout)["stages"]] == ["cached", "cached", "cached"]
    (variant,) = (tmp_path / "cache").glob("resnet50_fp32@*")  # --set builds a variant beside the recipe's views
    view = variant / "surgery" / "model.onnx"
    assert view.is_file() and view.stat().st_size > 40e6
