"""pipeline.recipe.registry called directly: kinds from entry points (imported only when asked for), plugin modules
beside a recipe, and unknown kinds with a did-you-mean."""

from __future__ import annotations

import importlib.metadata
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import TOY

from pipeline.errors import PipelineError, RecipeError
from pipeline.recipe.registry import GROUP, Registry, UnknownStageKind
from pipeline.stage import Stage

PLUGIN = '''
from pipeline.stage import OutputSpec, Stage


class Shout(Stage):
    """Writes a shout."""

    kind = "{kind}"
    outputs = {{"model": OutputSpec("shout.txt")}}


class NotAKind:
    kind = "not.a.stage"
'''


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_plugins prepends the recipe's folder: undone after
    return tmp_path


def _module(directory: Path, text: str) -> str:
    """A fresh module name per test: an imported module stays in sys.modules."""
    name = f"plug_{uuid.uuid4().hex[:10]}"
    (directory / f"{name}.py").write_text(text)
    return name


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, extra: dict[str, str]) -> None:
    """Entry points as if a third-party distribution declared `extra` (name -> "module:Class")."""
    real = importlib.metadata.entry_points

    def entry_points(**select: Any) -> Any:
        found = list(real(**select))
        if select.get("group") == GROUP:
            found += [importlib.metadata.EntryPoint(name, value, GROUP) for name, value in extra.items()]
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_built_in_kinds_come_from_entry_points() -> None:
    registry = Registry()
    declared = {ep.name for ep in importlib.metadata.entry_points(group=GROUP)}
    assert {"export.onnx", "onnx.surgery", "build.openvino", "validate"} <= declared
    assert set(registry.names()) == declared and registry.names() == sorted(declared)
    surgery = registry.get("onnx.surgery")
    assert issubclass(surgery, Stage) and surgery.kind == "onnx.surgery"
    assert registry.get("onnx.surgery") is surgery


def test_an_unknown_kind_suggests_the_closest_name() -> None:
    expected = r"unknown stage kind 'onnx\.surgry' \(did you mean 'onnx\.surgery'\?\)"
    with pytest.raises(UnknownStageKind, match=expected) as err:
        Registry().get("onnx.surgry")
    assert err.value.exit_code == 2
    with pytest.raises(UnknownStageKind) as far:
        Registry().get("zzzzzz")
    assert "did you mean" not in str(far.value)


def test_a_third_party_kind_registers_by_entry_point_and_is_imported_only_when_used(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(plugin_dir, PLUGIN.format(kind="acme.shout"))
    monkeypatch.syspath_prepend(str(plugin_dir))
    _with_entry_points(monkeypatch, {"acme.shout": f"{name}:Shout"})
    registry = Registry()
    assert "acme.shout" in registry.names()
    assert name not in sys.modules  # listing kinds imports none of them
    cls = registry.get("acme.shout")
    assert cls.kind == "acme.shout" and cls.__module__ == name and name in sys.modules


@pytest.mark.parametrize("target", ["Shout", "NotAKind"])
def test_an_entry_point_that_is_not_its_kind_is_an_error(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    name = _module(plugin_dir, PLUGIN.format(kind="acme.other"))
    monkeypatch.syspath_prepend(str(plugin_dir))
    _with_entry_points(monkeypatch, {"acme.shout": f"{name}:{target}"})
    with pytest.raises(PipelineError, match=f"entry point '{name}:{target}' for kind 'acme.shout' is not a Stage"):
        Registry().get("acme.shout")


def test_plugin_modules_beside_the_recipe_add_their_kinds(plugin_dir: Path) -> None:
    name = _module(plugin_dir, PLUGIN.format(kind="local.shout"))
    registry = Registry()
    assert "local.shout" not in registry.names()
    registry.load_plugins([name], plugin_dir, plugin_dir / "r.yaml", 2)
    assert "local.shout" in registry.names() and "not.a.stage" not in registry.names()
    assert registry.get("local.shout").__module__ == name
    with pytest.raises(UnknownStageKind, match="did you mean 'local.shout'"):
        registry.get("local.shot")


def test_the_toy_plugin_loads_every_toy_kind(plugin_dir: Path) -> None:
    toy = TOY
    registry = Registry()
    registry.load_plugins(["toystages"], toy, toy / "toy.yaml", 2)
    assert {"toy.write", "toy.upper", "toy.join", "toy.fail", "toy.gpu", "toy.call", "toy.data", "toy.timed"} <= set(
        registry.names()
    )
    assert registry.get("toy.gpu")().unmet() is not None


def test_a_plugin_that_does_not_import_is_a_recipe_error_at_the_plugins_line(plugin_dir: Path) -> None:
    broken = _module(plugin_dir, "raise RuntimeError('half-written plugin')\n")
    with pytest.raises(RecipeError, match=f"r.yaml:2: plugins: cannot import '{broken}': RuntimeError: half-written"):
        Registry().load_plugins([broken], plugin_dir, plugin_dir / "r.yaml", 2)
    with pytest.raises(RecipeError, match="cannot import 'no_such_plugin_module': ModuleNotFoundError"):
        Registry().load_plugins(["no_such_plugin_module"], plugin_dir, plugin_dir / "r.yaml", 2)


def test_a_plugin_without_a_stage_kind_is_a_recipe_error(plugin_dir: Path) -> None:
    empty = _module(plugin_dir, "from pipeline.stage import Stage  # imported, not defined here\nX = 1\n")
    with pytest.raises(RecipeError, match=f"module '{empty}' defines no Stage or DataKind subclass with a kind"):
        Registry().load_plugins([empty], plugin_dir, plugin_dir / "r.yaml", 2)
