"""Dataset kinds as plugins (pipeline/datakind.py): found by entry point or a recipe's plugins, validated
against their own spec with the recipe's line, asked for their fingerprint by the planner, opened by stages."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import HEAD, Project

from pipeline.datakind import GROUP
from pipeline.errors import KindBug, RecipeError
from pipeline.recipe.registry import Registry
from pipeline.stage import DatasetInput
from stages.data import open_dataset

LINES = HEAD.replace("plugins: [toystages]", "plugins: [toystages, toydata]") + (
    "data:\n  d:\n    kind: toy.lines\n    path: numbers.txt\n"
    "stages:\n  count: {uses: toy.count, inputs: {data: data.d}}\n"
)


def _samples(toy: Project) -> int:
    return toy.store.records.latest("toy", "count").summary["samples"]


def test_a_plugin_dataset_kind_is_keyed_by_its_files_and_its_reader_code(toy: Project) -> None:
    (toy.root / "numbers.txt").write_text("1\n2\n3\n")
    recipe = toy.load(LINES)
    assert recipe.datasets["d"].kind.__module__ == "toydata" and recipe.datasets["d"].spec.scale == 1.0
    result, _ = toy.run(recipe)
    assert toy.statuses(result) == {"count": "ran"} and _samples(toy) == 3

    assert toy.statuses(toy.run(toy.load())[0]) == {"count": "cached"}
    (toy.root / "numbers.txt").write_text("1\n2\n3\n4\n")
    assert toy.plan(toy.load())["count"].reasons == ("data.d: numbers.txt changed",)
    plugin = toy.root / "toydata.py"
    plugin.write_text(plugin.read_text() + "\n# the reader changed\n")
    assert toy.plan(toy.load())["count"].reasons == (
        "data.d reader: module toydata changed",
        "data.d: numbers.txt changed",
    )
    result, _ = toy.run(toy.load(), targets=())
    assert toy.statuses(result) == {"count": "ran"} and _samples(toy) == 4


def test_a_spec_error_in_a_plugin_kind_names_the_recipe_line(toy: Project) -> None:
    (toy.root / "numbers.txt").write_text("1\n")
    with pytest.raises(RecipeError, match=r"toy.yaml:7: data\.d\.scale: Input should be a valid number"):
        toy.load(LINES.replace("path: numbers.txt", "path: numbers.txt\n    scale: lots"))
    with pytest.raises(
        RecipeError, match=r"toy.yaml:5: data\.d\.kind: unknown kind 'toy.line' \(did you mean 'toy.lines'"
    ):
        toy.load(LINES.replace("kind: toy.lines", "kind: toy.line"))


def test_fingerprint_errors_blame_the_field_or_the_kind(toy: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    (toy.root / "numbers.bin").write_text("1\n")
    with pytest.raises(RecipeError, match=r"toy.yaml:6: data\.d\.path: expected a text file, not \.bin"):
        toy.plan(toy.load(LINES.replace("numbers.txt", "numbers.bin")))
    with pytest.raises(RecipeError, match=r"toy.yaml:5: data\.d: FileNotFoundError: .*missing.txt"):
        toy.plan(toy.load(LINES.replace("numbers.txt", "missing.txt")))
    (toy.root / "numbers.txt").write_text("1\n")
    recipe = toy.load(LINES)
    monkeypatch.setattr(recipe.datasets["d"].kind, "fingerprint", lambda self, spec, keys: spec.no_such_field)
    with pytest.raises(
        KindBug,
        match=r"kind toy.lines \(toydata\): fingerprint\(\) raised AttributeError: .* "
        r"a bug in the dataset kind, not in the recipe",
    ):
        toy.plan(recipe)


def test_a_plugin_may_not_redefine_a_built_in_dataset_kind(toy: Project) -> None:
    (toy.root / "fake_npz.py").write_text(
        "from typing import Literal\nfrom pipeline.datakind import DataKind, DataSpec\n\n\n"
        "class Spec(DataSpec):\n    kind: Literal['npz']\n\n\nclass Npz(DataKind):\n    kind = 'npz'\n    Spec = Spec\n"
    )
    with pytest.raises(
        RecipeError,
        match=r"kind 'npz' is defined twice: by fake_npz\.Npz and by "
        r"stages\.data\.arrays\.Npz",
    ):
        toy.load(LINES.replace("toydata]", "toydata, fake_npz]"))


def test_a_third_party_dataset_kind_registers_by_entry_point(toy: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed kinds need no `plugins:` line: the engine finds them by name, and a stage opens one
    without being told where its class lives (DatasetInput.reader unset)."""
    monkeypatch.syspath_prepend(str(toy.root))
    sys.modules.pop("toydata", None)
    real = importlib.metadata.entry_points

    def entry_points(**select: Any) -> Any:
        found = list(real(**select))
        if select.get("group") == GROUP:
            found.append(importlib.metadata.EntryPoint("toy.lines", "toydata:Lines", GROUP))
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    registry = Registry()
    assert "toy.lines" in registry.datasets.names() and "toydata" not in sys.modules  # listed, not imported
    assert registry.datasets.get("toy.lines").__module__ == "toydata"
    (toy.root / "numbers.txt").write_text("0.5\n1.5\n")
    data = DatasetInput("d", {"kind": "toy.lines", "path": "numbers.txt", "scale": 2}, Path("."))
    assert data.base_dir == toy.root.resolve()  # made absolute where it is made: stages run elsewhere
    batches = list(open_dataset(data, None).batches(8))
    assert len(batches) == 1 and batches[0][0]["x"].ravel().tolist() == [1.0, 3.0]
    recipe = toy.load(LINES.replace("toystages, toydata", "toystages"))
    assert toy.statuses(toy.run(recipe)[0]) == {"count": "ran"}


def test_open_dataset_errors_name_the_dataset() -> None:
    with pytest.raises(ValueError, match=r"data\.calib: unknown dataset kind 'npzz' \(did you mean 'npz'"):
        open_dataset(DatasetInput("calib", {"kind": "npzz"}, Path("/")), None)
    with pytest.raises(ValueError, match=r"data\.calib: invalid dataset spec: count: Input should be greater"):
        open_dataset(DatasetInput("calib", {"kind": "synthetic", "count": 0}, Path("/")), None)
