"""Outputs are published under the names of the run that asks for them, whoever built the result first."""

from __future__ import annotations

from pathlib import Path

from harness import Project

COPY = (
    "name: toy_copy\nplugins: [toystages]\n"
    "stages:\n"
    '  write: {uses: toy.write, with: {text: "abc\\n"}}\n'
    "  up: {uses: toy.upper, from: write}\n"
    '  other: {uses: toy.write, with: {text: "xyz"}}\n'
    "  join:  {uses: toy.join, inputs: {a: up, b: other}}\n"
)


def _shown(project: Project, recipe: str, stage: str) -> Path:
    proc = project.cli("show", recipe, stage)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.split("\t")[-1].strip())


def test_a_result_built_by_another_recipe_is_published_under_this_recipes_names(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    project.write_recipe(COPY, "toy_copy.yaml")
    proc = project.cli("run", "toy_copy.yaml")
    assert proc.returncode == 0, proc.stderr
    assert len(project.runs()) == 4, "every stage was served from the cache"
    views = project.cache / "toy_copy"
    assert (views / "up" / "upper.txt").read_text() == "ABC"
    assert not (views / "upper").exists()
    shown = _shown(project, "toy_copy.yaml", "up")
    assert shown == views / "up" / "upper.txt" and shown.read_text() == "ABC"
    assert _shown(project, "toy.yaml", "upper").read_text() == "ABC"  # the first recipe's view is untouched


def test_a_stage_renamed_in_place_gets_its_new_name(project: Project) -> None:
    assert project.cli("run", "toy.yaml").returncode == 0
    text = project.recipe.read_text().replace("upper:", "shout:").replace("a: upper", "a: shout")
    project.write_recipe(text)
    assert project.cli("run", "toy.yaml").returncode == 0
    assert len(project.runs()) == 4
    assert (project.cache / "toy" / "shout" / "upper.txt").read_text() == "ABC"
    assert _shown(project, "toy.yaml", "shout").is_file()
    assert "shout" in project.lock() and "upper" not in project.lock()
