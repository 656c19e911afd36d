"""Resolve a recipe's code reference (`module:function` or `path/to/file.py:function`).

Model factories and surgery's python ops name user code this way. A path is
read relative to the recipe's directory, and module names are looked up with
that directory on `sys.path`, so code kept next to a recipe works from any cwd.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable


def callable_from_ref(ref: str, base_dir: Path) -> Callable[..., Any]:
    """The function `ref` names; ValueError with the reason when it cannot be found."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"code reference {ref!r}: expected 'module:function' or 'path/to/file.py:function'")
    module = _module_from_file(target, base_dir) if _is_path(target) else _module_from_name(target, base_dir)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"code reference {ref!r}: {target} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"code reference {ref!r}: {attr} is not callable")
    return obj


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _module_from_name(name: str, base_dir: Path) -> ModuleType:
    directory = str(Path(base_dir).resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {name!r}: {exc}") from None


def _module_from_file(relpath: str, base_dir: Path) -> ModuleType:
    """Execute the file afresh under a name derived from its relative path.

    The name is independent of where the checkout lives, and re-executing
    (rather than reusing sys.modules) means an edited file is always reread.
    """
    path = (Path(base_dir) / relpath).resolve()
    if not path.is_file():
        raise ValueError(f"no such file {relpath!r} (looked for {path})")
    name = "_recipe_code_" + re.sub(r"\W", "_", Path(relpath).with_suffix("").as_posix())
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load {relpath!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and torch.export look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
