"""Finds kinds: stage kinds (`pipeline.stages`) and dataset kinds (`pipeline.data`), from entry points and
from a recipe's plugins.

Built-in and third-party kinds register the same way. Only the kinds a recipe
uses are imported, and kind modules are light: importing one never pulls in
torch, onnx or openvino.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import sys
from pathlib import Path
from typing import Any, Generic, TypeVar

from pipeline.datakind import GROUP as DATA_GROUP
from pipeline.datakind import DataKind
from pipeline.errors import PipelineError, RecipeError, did_you_mean
from pipeline.stage import Stage

GROUP = "pipeline.stages"

K = TypeVar("K", Stage, DataKind)


class UnknownStageKind(PipelineError):
    exit_code = 2


class UnknownDataKind(PipelineError):
    exit_code = 2


class Kinds(Generic[K]):
    """Kind name -> class, loaded lazily from one entry-point group and from plugin modules."""

    def __init__(self, group: str, base: type[K], noun: str, unknown: type[PipelineError]) -> None:
        self.base: type[K] = base
        self.noun, self.unknown = noun, unknown
        self._entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}
        self._loaded: dict[str, type[K]] = {}

    def names(self) -> list[str]:
        return sorted(set(self._entry_points) | set(self._loaded))

    def get(self, kind: str) -> type[K]:
        if kind in self._loaded:
            return self._loaded[kind]
        ep = self._entry_points.get(kind)
        if ep is None:
            raise self.unknown(f"unknown {self.noun} {kind!r}{did_you_mean(kind, self.names())}")
        cls = ep.load()
        if not self._is_kind(cls) or cls.kind != kind:
            raise PipelineError(
                f"entry point {ep.value!r} for kind {kind!r} is not a {self.base.__name__} with kind = {kind!r}"
            )
        self._loaded[kind] = cls
        return cls

    def add(self, cls: type[K]) -> None:
        self._loaded[cls.kind] = cls

    def defined_in(self, module: Any) -> list[type[K]]:
        """The kinds `module` itself defines (not those it imports)."""
        return [c for c in vars(module).values() if self._is_kind(c) and c.kind and c.__module__ == module.__name__]

    def _is_kind(self, obj: Any) -> bool:
        return inspect.isclass(obj) and issubclass(obj, self.base)

    def already(self, cls: type[K]) -> str | None:
        """Where another definition of `cls.kind` lives, if there is one (a plugin must not replace it)."""
        other = self._loaded.get(cls.kind)
        where = f"{other.__module__}.{other.__qualname__}" if other is not None else None
        if other is None and cls.kind in self._entry_points:
            where = self._entry_points[cls.kind].value.replace(":", ".")
        return where if where is not None and where != f"{cls.__module__}.{cls.__qualname__}" else None


class Registry:
    """Every kind a run can name: `stages` (what `uses:` names) and `datasets` (what a `data:` entry's
    `kind:` names). `get` and `names` are the stage kinds'."""

    def __init__(self) -> None:
        self.stages: Kinds[Stage] = Kinds(GROUP, Stage, "stage kind", UnknownStageKind)
        self.datasets: Kinds[DataKind] = Kinds(DATA_GROUP, DataKind, "dataset kind", UnknownDataKind)

    def names(self) -> list[str]:
        return self.stages.names()

    def get(self, kind: str) -> type[Stage]:
        return self.stages.get(kind)

    def add(self, cls: type[Stage]) -> None:
        self.stages.add(cls)

    def load_plugins(self, modules: list[str], recipe_dir: Path, recipe_path: Path, line: int | None) -> None:
        """Import plugin modules from the recipe's directory and register the stage and dataset kinds they
        define; a kind defined twice is an error naming both definitions."""
        add_to_path(recipe_dir)
        for name in modules:
            try:
                module = importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
                raise RecipeError(
                    recipe_path, line, "plugins", f"cannot import {name!r}: {type(exc).__name__}: {exc}"
                ) from None
            found = self._register(self.stages, module, recipe_path, line) + self._register(
                self.datasets, module, recipe_path, line
            )
            if not found:
                raise RecipeError(
                    recipe_path, line, "plugins", f"module {name!r} defines no Stage or DataKind subclass with a kind"
                )

    @staticmethod
    def _register(table: Kinds[K], module: Any, recipe_path: Path, line: int | None) -> int:
        """Add the kinds `module` defines to `table`; how many there were."""
        found = table.defined_in(module)
        for cls in found:
            other = table.already(cls)
            if other is not None:
                raise RecipeError(
                    recipe_path,
                    line,
                    "plugins",
                    f"kind {cls.kind!r} is defined twice: by {cls.__module__}.{cls.__qualname__} and by {other}; "
                    "rename one of them",
                )
            table.add(cls)
        return len(found)


def add_to_path(directory: Path) -> None:
    d = str(directory.resolve())
    if d not in sys.path:
        sys.path.insert(0, d)
