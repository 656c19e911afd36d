"""Find the code a `module:function` or `file.py:function` reference names, without importing it.

A cached run must not import a model's package (it may import torch), yet a
typo in a factory should be a recipe error before anything runs, not a stage
failure after torch has loaded. So the module is found as the import system
would find it (by path; a top-level name only an import hook knows, such as a
setuptools editable install, through `importlib.util.find_spec`, which imports
nothing for a top-level name), and the function's name is looked up in the
module's source with `ast`: top-level definitions, assignments and imports, and
star imports of modules in the same package. Where the source cannot tell (an
extension module, a module `__getattr__`, a star import from elsewhere) the
name is taken on trust and the stage finds out when it runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection

if TYPE_CHECKING:
    import ast

from pipeline.errors import did_you_mean

UNKNOWN = "*"  # in a module's name list: the source cannot say which names it defines
EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


ModuleIn = Callable[[Path, str], "tuple[Path, bool] | None"]


def find_module(module: str, search_path: list[str], look: ModuleIn | None = None) -> tuple[Path, Path | None]:
    """(top-level package dir or module file, the module's source file or None if not Python source).

    `look` finds a name in one folder (default: `module_in`; a caller may pass one that keeps folder
    listings)."""
    look = look or module_in
    parts = module.split(".")
    location = find_top_level(parts[0], search_path, look)
    if location is None:
        raise ModuleNotFoundError(f"no module named {parts[0]!r}")
    top, current = location, location
    for i, part in enumerate(parts[1:], start=1):
        nxt = look(current, part) if current.is_dir() else None
        if nxt is None:
            raise ModuleNotFoundError(f"no module named {'.'.join(parts[: i + 1])!r}")
        current = nxt[0]
    if current.is_dir():
        init = current / "__init__.py"
        return top, init if init.is_file() else None
    return top, current if current.suffix == ".py" else None


class NameNotDefined(AttributeError):
    """A recipe names a function its module does not define: the user's to fix (a plain AttributeError
    raised while computing a key is a bug in the code that raised it). Messages name it as the
    AttributeError Python itself would raise on import."""


NameNotDefined.__name__ = "AttributeError"


def check_name(source: Path | None, name: str, what: str, names_of: Callable[[Path], str]) -> None:
    """Raise NameNotDefined unless `source` defines `name` (or cannot tell). `names_of` may memoise."""
    if source is None:
        return
    names = json.loads(names_of(source))
    if UNKNOWN in names or name.split(".")[0] in names:
        return
    public = [n for n in names if not n.startswith("_")]
    raise NameNotDefined(f"{what} has no attribute {name.split('.')[0]!r}{did_you_mean(name.split('.')[0], public)}")


def defined_names(source: Path) -> str:
    """The names a module's source binds at top level, as sorted JSON (UNKNOWN if it cannot tell)."""
    return json.dumps(sorted(_names(source, depth=0)))


def _names(source: Path, depth: int) -> set[str]:
    import ast  # only when a module's names are not memoised yet: not on a cached run

    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (OSError, SyntaxError, ValueError):
        return {UNKNOWN}
    names: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if node.name == "__getattr__":
                names.add(UNKNOWN)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name)
                else:
                    names |= _star(source, node, depth)
    return names


def _top_level(body: list["ast.stmt"]) -> list["ast.stmt"]:
    """Statements at module level, including those inside if/try blocks (conditional definitions)."""
    import ast

    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
            for handler in node.handlers:
                out += _top_level(handler.body)
    return out


def _star(source: Path, node: "ast.ImportFrom", depth: int) -> set[str]:
    """Names a relative `from .mod import *` brings in; UNKNOWN for anything else."""
    if node.level == 0 or depth >= 4:
        return {UNKNOWN}
    package = source.parent
    for _ in range(node.level - 1):
        package = package.parent
    target: Path | None = package
    for part in (node.module or "").split(".") if node.module else []:
        target = _child(target, part) if target is not None and target.is_dir() else None
    if target is None:
        return {UNKNOWN}
    file = target / "__init__.py" if target.is_dir() else target
    if file.suffix != ".py" or not file.is_file():
        return {UNKNOWN}
    return {n for n in _names(file, depth + 1) if not n.startswith("_") or n == UNKNOWN}


def module_in(directory: Path, part: str, names: Collection[str] | None = None) -> tuple[Path, bool] | None:
    """(`part` in `directory`, is it a namespace package), in the order Python's path finder tries: a
    package, an extension module, a .py file, then a folder without `__init__.py`. `names` is the
    folder's listing when the caller keeps one."""
    if names is None:
        try:
            names = set(os.listdir(directory))
        except OSError:
            return None
    folder = directory / part
    is_dir = part in names and folder.is_dir()
    if is_dir and (folder / "__init__.py").is_file():
        return folder, False
    for suffix in EXTENSION_SUFFIXES:
        if part + suffix in names:
            return directory / (part + suffix), False
    if f"{part}.py" in names:
        return directory / f"{part}.py", False
    return (folder, True) if is_dir else None


def _child(directory: Path, part: str) -> Path | None:
    found = module_in(directory, part)
    return found[0] if found else None


def find_top_level(top: str, search_path: list[str], look: ModuleIn | None = None) -> Path | None:
    """Where import finds the top-level module `top`: the first search-path entry with a package,
    extension module or .py file of that name; else a namespace package (found last, as Python does);
    else an import hook's (an editable install)."""
    look = look or module_in
    found = [c for c in (look(Path(e), top) for e in search_path if e and os.path.isdir(e)) if c is not None]
    regular = [path for path, namespace in found if not namespace]
    return regular[0] if regular else found[0][0] if found else hooked_location(top)


def hooked_location(top: str) -> Path | None:
    """A top-level module only an import hook knows, such as an editable install (find_spec imports
    nothing for a top-level name)."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin) if spec.origin and os.path.exists(spec.origin) else None
