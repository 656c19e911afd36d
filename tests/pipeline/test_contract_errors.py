"""Mistakes blamed on the right party: the recipe's author, or the author of a stage kind."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import TOY

from pipeline.cache import Cache
from pipeline.errors import KindBug, RecipeError
from pipeline.recipe.load import load_recipe
from pipeline.run.plan import Planner

BUGGY_KIND = """
from pipeline.stage import OutputSpec, Stage


class Buggy(Stage):
    kind = "my.buggy"
    outputs = {"model": OutputSpec("out.txt")}

    def fingerprint(self, params, model, keys):
        return {"x": params.no_such_param}  # the kind's bug: its params have no such field
"""


@pytest.fixture(autouse=True)
def toy_on_path(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TOY))


def test_an_empty_recipe_is_a_recipe_error_at_its_stages_line(tmp_path: Path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text("name: r\n\nstages: {}\n")
    with pytest.raises(RecipeError, match=r"r.yaml:3: stages: a recipe needs at least one stage"):
        load_recipe(p)


def test_a_plugin_redefining_a_kind_names_both_modules(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mykinds.py").write_text(
        "from toystages import Write\n\n\nclass Write2(Write):\n    kind = 'toy.write'\n"
    )
    p = tmp_path / "r.yaml"
    p.write_text("plugins: [toystages, mykinds]\nstages:\n  a: {uses: toy.write}\n")
    with pytest.raises(
        RecipeError,
        match=r"r.yaml:1: plugins: kind 'toy.write' is defined twice: by "
        r"mykinds.Write2 and by toystages.Write",
    ):
        load_recipe(p)
    p.write_text("plugins: [toystages, toystages]\nstages:\n  a: {uses: toy.write}\n")
    assert load_recipe(p).stages["a"].kind.kind == "toy.write"  # the same module twice is no conflict


def test_a_plugin_redefining_a_built_in_kind_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(
        "from pipeline.stage import OutputSpec, Stage\n\n\nclass Mine(Stage):\n"
        "    kind = 'validate'\n    outputs = {'model': OutputSpec('x')}\n"
    )
    p = tmp_path / "r.yaml"
    p.write_text("plugins: [mine]\nstages:\n  a: {uses: validate}\n")
    with pytest.raises(
        RecipeError,
        match=r"kind 'validate' is defined twice: by mine.Mine and by "
        r"stages.validate.Validate",
    ):
        load_recipe(p)


def test_a_bug_in_a_kinds_fingerprint_is_the_kinds_not_the_recipes(tmp_path: Path) -> None:
    (tmp_path / "buggy.py").write_text(BUGGY_KIND)
    p = tmp_path / "r.yaml"
    p.write_text("plugins: [buggy]\nstages:\n  a: {uses: my.buggy}\n")
    recipe = load_recipe(p)
    with pytest.raises(KindBug) as caught:
        Planner(recipe, Cache(tmp_path / "cache")).prepare(["a"])
    text = str(caught.value)
    assert text.startswith("kind my.buggy (buggy): fingerprint() raised AttributeError:") and "buggy.py:" in text
    assert "a bug in the stage kind, not in the recipe" in text and caught.value.exit_code == 1


def test_a_function_the_recipe_names_but_its_module_lacks_is_still_the_recipes(tmp_path: Path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text("plugins: [toystages]\nstages:\n  a: {uses: toy.call, with: {fn: 'userpkg.textgen:mkae'}}\n")
    recipe = load_recipe(p)
    with pytest.raises(
        RecipeError,
        match=r"r.yaml:3: stages.a.with: AttributeError: userpkg.textgen has no "
        r"attribute 'mkae' \(did you mean 'make'\?\)",
    ):
        Planner(recipe, Cache(tmp_path / "cache")).prepare(["a"])


def test_a_kind_that_still_sets_uses_model_is_told_what_replaced_it() -> None:
    from pipeline.stage import Stage

    with pytest.raises(TypeError, match=r"`uses_model` is gone; name the `model:` fields the kind reads"):

        class Old(Stage):  # noqa: F841 - defining it is the test
            kind = "old.kind"
            uses_model = True
