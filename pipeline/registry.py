"""Finds stage kinds: entry points (`pipeline.stages`) and a recipe's plugins.

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

from pipeline.errors import PipelineError, RecipeError, did_you_mean
from pipeline.stage import Stage

GROUP = "pipeline.stages"


class UnknownStageKind(PipelineError):
    exit_code = 2


class Registry:
    """Kind name -> stage class, loaded lazily from entry points and plugin modules."""

    def __init__(self) -> None:
        self._entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}
        self._loaded: dict[str, type[Stage]] = {}

    def names(self) -> list[str]:
        return sorted(set(self._entry_points) | set(self._loaded))

    def get(self, kind: str) -> type[Stage]:
        if kind in self._loaded:
            return self._loaded[kind]
        ep = self._entry_points.get(kind)
        if ep is None:
            raise UnknownStageKind(f"unknown stage kind {kind!r}{did_you_mean(kind, self.names())}")
        cls = ep.load()
        if not (inspect.isclass(cls) and issubclass(cls, Stage)) or cls.kind != kind:
            raise PipelineError(f"entry point {ep.value!r} for kind {kind!r} is not a Stage with kind = {kind!r}")
        self._loaded[kind] = cls
        return cls

    def add(self, cls: type[Stage]) -> None:
        self._loaded[cls.kind] = cls

    def load_plugins(self, modules: list[str], recipe_dir: Path, recipe_path: Path, line: int | None) -> None:
        """Import plugin modules from the recipe's directory and register their Stage classes."""
        add_to_path(recipe_dir)
        for name in modules:
            try:
                module = importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
                raise RecipeError(recipe_path, line, "plugins", f"cannot import {name!r}: {type(exc).__name__}: {exc}") from None
            found = [c for c in vars(module).values()
                     if inspect.isclass(c) and issubclass(c, Stage) and c.kind and c.__module__ == module.__name__]
            if not found:
                raise RecipeError(recipe_path, line, "plugins", f"module {name!r} defines no Stage subclass with a kind")
            for cls in found:
                self._check_new(cls, recipe_path, line)
                self.add(cls)


    def _check_new(self, cls: type[Stage], recipe_path: Path, line: int | None) -> None:
        """A plugin kind must not silently replace another definition of the same kind."""
        other = self._loaded.get(cls.kind)
        where = f"{other.__module__}.{other.__qualname__}" if other is not None else None
        if other is None and cls.kind in self._entry_points:
            where = self._entry_points[cls.kind].value.replace(":", ".")
        if where is not None and where != f"{cls.__module__}.{cls.__qualname__}":
            raise RecipeError(recipe_path, line, "plugins",
                              f"kind {cls.kind!r} is defined twice: by {cls.__module__}.{cls.__qualname__} and by "
                              f"{where}; rename one of them")


def add_to_path(directory: Path) -> None:
    d = str(directory.resolve())
    if d not in sys.path:
        sys.path.insert(0, d)
