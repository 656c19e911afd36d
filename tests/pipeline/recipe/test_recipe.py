from __future__ import annotations

from pathlib import Path

import pytest
from harness import TOY

from pipeline.errors import RecipeError
from pipeline.recipe.load import load_recipe


def _recipe(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text("plugins: [toystages]\n" + text)
    return p


@pytest.fixture(autouse=True)
def toy_on_path(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TOY))


def test_from_is_shorthand_for_model_input_and_refs_resolve(tmp_path: Path) -> None:
    (tmp_path / "given.txt").write_text("x")
    r = load_recipe(
        _recipe(
            tmp_path,
            "stages:\n  a: {uses: toy.write}\n  b: {uses: toy.upper, from: a}\n"
            "  c: {uses: toy.join, inputs: {a: b.model, b: given.txt}}\n",
        )
    )
    assert r.name == "r"
    assert str(r.stages["b"].inputs["model"]) == "a.model"
    assert r.stages["c"].inputs["b"].kind == "path" and r.stages["c"].inputs["b"].target == str(tmp_path / "given.txt")


def test_set_overrides_params_and_is_validated(tmp_path: Path) -> None:
    p = _recipe(tmp_path, "stages:\n  a: {uses: toy.write}\n")
    assert load_recipe(p, ["stages.a.with.repeat=3"]).stages["a"].params.repeat == 3
    with pytest.raises(RecipeError, match="stages.a.with.repeat: Input should be a valid integer"):
        load_recipe(p, ["stages.a.with.repeat=lots"])
    with pytest.raises(RecipeError, match="no stages.zz in the recipe"):
        load_recipe(p, ["stages.zz.with.repeat=3"])


def test_unknown_output_is_named(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"r.yaml:4: stages.b.from: stage 'a' \(toy.write\) has no output 'weights'"):
        load_recipe(_recipe(tmp_path, "stages:\n  a: {uses: toy.write}\n  b: {uses: toy.upper, from: a.weights}\n"))


def test_data_refs_must_name_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="stages.b.from: expected an artifact"):
        load_recipe(
            _recipe(tmp_path, "data:\n  calib: {kind: synthetic}\nstages:\n  b: {uses: toy.upper, from: data.calib}\n")
        )


def test_a_path_named_like_a_stage_is_an_error_not_a_silent_rewire(tmp_path: Path) -> None:
    text = "stages:\n  a: {uses: toy.write}\n  b: {uses: toy.upper, from: a}\n"
    assert load_recipe(_recipe(tmp_path, text)).stages["b"].inputs["model"].kind == "stage"
    (tmp_path / "a").mkdir()
    with pytest.raises(RecipeError, match=r"r.yaml:4: stages.b.from: 'a' names both stage 'a' and a path.*'./a'"):
        load_recipe(_recipe(tmp_path, text))
    explicit = load_recipe(_recipe(tmp_path, text.replace("from: a}", "from: ./a}")))
    assert explicit.stages["b"].inputs["model"].target == str(tmp_path / "a")
    # A file whose name only looks like stage.output (no such output) is the file.
    (tmp_path / "a.onnx").write_text("x")
    as_file = load_recipe(_recipe(tmp_path, text.replace("from: a}", "from: a.onnx}")))
    assert as_file.stages["b"].inputs["model"].kind == "path"


def test_a_bad_set_value_is_blamed_on_the_command_line(tmp_path: Path) -> None:
    p = _recipe(tmp_path, "stages:\n  a: {uses: toy.write}\n")
    with pytest.raises(RecipeError) as bad_type:
        load_recipe(p, ["stages.a.with.repeat=abc"])
    assert str(bad_type.value) == (
        f"{p}: --set stages.a.with.repeat: Input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')"
    )
    with pytest.raises(RecipeError) as bad_yaml:
        load_recipe(p, ["stages.a.with.text=[1"])
    assert "\n" not in str(bad_yaml.value) and "--set stages.a.with.text: bad YAML value '[1'" in str(bad_yaml.value)
    with pytest.raises(RecipeError, match=r"r.yaml:3: stages.a.with.repeat"):  # the file's own mistake: its line
        load_recipe(
            _recipe(tmp_path, "stages:\n  a: {uses: toy.write, with: {repeat: x}}\n"), ["stages.a.with.text=hi"]
        )


@pytest.mark.parametrize("where", ["with: {repeat: true}", "with: {repeat: false}"])
def test_a_boolean_is_not_a_number(tmp_path: Path, where: str) -> None:
    with pytest.raises(
        RecipeError, match=r"r.yaml:3: stages.a.with.repeat: expected a number, not a boolean \(got (True|False)\)"
    ):
        load_recipe(_recipe(tmp_path, "stages:\n  a: {uses: toy.write, " + where + "}\n"))
    with pytest.raises(RecipeError, match=r"--set stages.a.with.repeat: expected a number, not a boolean \(got True\)"):
        load_recipe(_recipe(tmp_path, "stages:\n  a: {uses: toy.write}\n"), ["stages.a.with.repeat=true"])
    with pytest.raises(RecipeError, match=r"model.seed: expected a number, not a boolean \(got True\)"):
        load_recipe(_recipe(tmp_path, "model: {seed: yes}\nstages:\n  a: {uses: toy.write}\n"))
