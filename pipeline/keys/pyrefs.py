"""Find the code a `module:function` or `file.py:function` reference names, without importing it.

A cached run must not import a model's package (it may import torch), yet a
typo in a factory should be a recipe error before anything runs, not a stage
failure after torch has loaded. So the module is found as the import system
would find it (by path; a top-level name only an import hook knows, such as a
setuptools editable install, through `importlib.util.find_spec`, which imports
nothing for a top-level name), and the function's name is looked up in the
module's source with `ast`: top-level definitions, assignments and imports, and
star imports of modules in the same top-level package (relative or absolute),
which bring the target's literal `__all__` or else its public names. This holds
for installed packages too (`torchvision.models:resnet5` is a recipe error).
Where the source cannot tell (an extension module, a module `__getattr__`, a
star import from another package, an `__all__` built at run time) the name is
taken on trust and the stage finds out when it runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection

if TYPE_CHECKING:
    import ast

from pipeline.errors import NameNotDefined, did_you_mean

UNKNOWN = "*"  # in a module's name list: the source cannot say which names it defines
EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
MAX_STAR_DEPTH = 8  # star imports of star imports followed before taking the rest on trust


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


def check_name(source: Path | None, name: str, what: str, names_of: Callable[[Path], str]) -> None:
    """Raise NameNotDefined unless `source` defines `name` (or cannot tell).

    `names_of` gives one file's `defined_names` record and may memoise it; the records of the files its
    star imports reach are combined here, so an edit to any one of them is seen."""
    if source is None:
        return
    names = _Namespaces(names_of).of(source)
    if UNKNOWN in names or name.split(".")[0] in names:
        return
    public = sorted(n for n in names if not n.startswith("_"))
    raise NameNotDefined(f"{what} has no attribute {name.split('.')[0]!r}{did_you_mean(name.split('.')[0], public)}")


def defined_names(source: Path) -> str:
    """One module's source as JSON: the `names` it binds at top level (UNKNOWN if it cannot tell), its
    literal `__all__` as `exports` (null without one, [UNKNOWN] if not literal) and the star imports it
    makes as `stars`, [level, module]. Star imports are resolved by `check_name`, not here."""
    import ast  # only when a module's names are not memoised yet: not on a cached run

    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (OSError, SyntaxError, ValueError):
        return json.dumps({"names": [UNKNOWN], "exports": None, "stars": []})
    names: set[str] = set()
    stars: list[tuple[int, str]] = []
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if node.name == "__getattr__":
                names.add(UNKNOWN)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    names.update(n.id for n in ast.walk(item.optional_vars) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name)
                else:
                    stars.append((node.level, node.module or ""))
    if _binds_dynamically(tree):
        names.add(UNKNOWN)
    exports = _exports(tree)
    if exports is None and "__all__" in names:  # bound some way _exports does not read (imported)
        exports = [UNKNOWN]
    return json.dumps({"names": sorted(names), "exports": exports, "stars": stars})


def _binds_dynamically(tree: "ast.Module") -> bool:
    """Does the module bind names the source does not spell out: through `globals()` (numpy's type
    aliases, protobuf's generated modules), `sys.modules[__name__]`, or a function that adds to
    `__all__` (a registry filled by `setattr` from elsewhere: numpy.dtypes)?"""
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("globals", "vars"):
            return True
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name) and node.slice.id == "__name__":
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and any(
            isinstance(n, ast.Name) and n.id == "__all__" for n in ast.walk(node)
        ):
            return True
    return False


def _exports(tree: "ast.Module") -> list[str] | None:
    """A module's `__all__` when its source spells it out: string literals assigned, added with `+=`,
    `.extend` or `.append` at top level. [UNKNOWN] if `__all__` is touched any other way (built in a loop,
    appended to by a decorator, copied from another module); None if there is no `__all__`.
    Removals are ignored: the names stay a superset, so no name Python would find is refused."""
    import ast

    found: set[str] | None = None
    understood: set[int] = set()
    for node in _top_level(tree.body):
        added = _literal_all(node)
        if added is not None:
            found = (found or set()) | added
            understood.update(id(n) for n in ast.walk(node))
    touched = any(isinstance(n, ast.Name) and n.id == "__all__" and id(n) not in understood for n in ast.walk(tree))
    if touched:
        return [UNKNOWN]
    return None if found is None else sorted(found)


def _literal_all(node: "ast.stmt") -> set[str] | None:
    """The names one top-level statement puts in `__all__`, if it is a form `_exports` understands."""
    import ast

    def strings(value: ast.expr) -> set[str] | None:
        """The string literals `value` is (one, or a list or tuple of them); None if it is anything else."""
        items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
        found = [e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return set(found) if len(found) == len(items) else None

    def is_all(target: ast.expr) -> bool:
        return isinstance(target, ast.Name) and target.id == "__all__"

    sequence = (ast.List, ast.Tuple)
    if isinstance(node, ast.Assign) and any(is_all(t) for t in node.targets) and isinstance(node.value, sequence):
        return strings(node.value) if all(isinstance(t, ast.Name) for t in node.targets) else None
    if isinstance(node, ast.AnnAssign) and is_all(node.target) and isinstance(node.value, sequence):
        return strings(node.value)
    if isinstance(node, ast.AugAssign) and is_all(node.target) and isinstance(node.op, ast.Add):
        return strings(node.value) if isinstance(node.value, sequence) else None
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and len(node.value.args) == 1:
        func, arg = node.value.func, node.value.args[0]
        if isinstance(func, ast.Attribute) and is_all(func.value):
            if func.attr == "extend" and isinstance(arg, sequence):
                return strings(arg)
            if func.attr == "append":
                return strings(arg)
            if func.attr == "remove":
                return set()
    return None


def _top_level(body: list["ast.stmt"]) -> list["ast.stmt"]:
    """Statements at module level, including those inside if/try blocks (conditional definitions) and
    loops and with blocks (their bodies run at import too)."""
    import ast

    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, (ast.If, ast.For, ast.AsyncFor, ast.While)):
            out += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            out += _top_level(node.body)
        elif isinstance(node, ast.Try):
            out += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
            for handler in node.handlers:
                out += _top_level(handler.body)
    return out


class _Namespaces:
    """Module namespaces combined from per-file records along star imports, each module's once per check
    (a package whose modules star-import each other would otherwise be read again on every path)."""

    def __init__(self, names_of: Callable[[Path], str]):
        self.names_of = names_of
        self.records: dict[Path, dict[str, Any]] = {}
        self.namespaces: dict[Path, set[str]] = {}

    def record(self, source: Path) -> dict[str, Any]:
        if source not in self.records:
            self.records[source] = json.loads(self.names_of(source))
        return self.records[source]

    def of(self, source: Path, chain: tuple[Path, ...] = ()) -> set[str]:
        """The names a module binds: its own, its `__all__`'s, and what each of its star imports brings."""
        if source not in self.namespaces:
            record = self.record(source)
            names = set(record["names"]) | (set(record["exports"] or []) - {UNKNOWN})
            for level, module in record["stars"]:
                names |= self.star(source, level, module, (*chain, source))
            self.namespaces[source] = names
        return self.namespaces[source]

    def star(self, source: Path, level: int, module: str, chain: tuple[Path, ...]) -> set[str]:
        """The names `from module import *` (in `source`) binds: the target's `__all__` if literal; all its
        names if its `__all__` is computed (`__all__` may only list names the module has); else its public
        names. UNKNOWN when the target is outside `source`'s top-level package, is not Python source, or
        the chain of star imports loops or runs deep."""
        target = _star_target(source, level, module)
        if target is None or target in chain or len(chain) > MAX_STAR_DEPTH:
            return {UNKNOWN}
        exports = self.record(target)["exports"]
        if exports is not None and UNKNOWN not in exports:
            return set(exports)
        names = self.of(target, chain)
        return names if exports is not None else {n for n in names if not n.startswith("_") or n == UNKNOWN}


def _star_target(source: Path, level: int, module: str) -> Path | None:
    """The source file a star import in `source` reads, if it is in the same top-level package: relative
    (`from .resnet import *`) or absolute (`from torchvision.models.resnet import *`)."""
    parts = module.split(".") if module else []
    if level:
        package: Path | None = source.parent
        for _ in range(level - 1):
            package = package.parent if package is not None and (package / "__init__.py").is_file() else None
    else:
        top = _top_package(source)
        if top is None or not parts or parts[0] != top.name:
            return None
        package, parts = top, parts[1:]
    for part in parts:
        package = _child(package, part) if package is not None and package.is_dir() else None
    if package is None:
        return None
    file = package / "__init__.py" if package.is_dir() else package
    return file if file.suffix == ".py" and file.is_file() else None


def _top_package(source: Path) -> Path | None:
    """The outermost regular package (a folder with `__init__.py`) that holds `source`, if any."""
    top = None
    folder = source.parent
    while (folder / "__init__.py").is_file() and folder.name.isidentifier():
        top, folder = folder, folder.parent
    return top


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
