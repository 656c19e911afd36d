"""The code a stage runs: a module's import closure, found with `ast` without importing anything.

A key must change when any code a stage ran could have changed, so the code
part of a key is not one file but everything that file imports, transitively,
the way Bazel derives an action's inputs instead of trusting a hand-kept list:

- local modules (the recipe's folder, the project's `stages/`, a source tree
  on `sys.path`, an editable install) enter by the digest of their whole file,
  named by module name so two checkouts of the same code agree;
- modules of an installed distribution enter by the distribution's name and
  version (its files are not read); a distribution installed from a local
  path (`direct_url.json` with `dir_info`) has no meaningful version, so its
  modules are followed and hashed like local ones;
- the standard library and the engine itself (`pipeline`, whose changes that
  alter results bump the kinds' `version`) stay out; an import that resolves
  nowhere enters as `missing`, so installing it later changes the key.

Imports inside functions count (heavy libraries are imported there); imports
under `if TYPE_CHECKING:` do not (they never run). What `ast` cannot see
(`importlib.import_module(name)`, data files) is what a recipe's `source:`
is for. Each file's import list is memoised by its (inode, mtime, size), and
each folder's distribution map by the folder's own stamp (installing or
removing a distribution changes it), so a cached run stats files and reads
memo rows: it parses nothing.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pipeline
from pipeline.keys.distributions import distribution_map
from pipeline.keys.pyrefs import find_top_level, module_in

if TYPE_CHECKING:
    import ast

    from pipeline.cache.hashing import DigestMemo

MISSING = "missing"
_ENGINE = Path(pipeline.__file__).resolve().parent  # the whole `pipeline` package: never part of a closure


@dataclass
class Closure:
    """What a piece of code runs: local modules by digest, distributions by version (or `missing`)."""

    modules: dict[str, str] = field(default_factory=dict)
    distributions: dict[str, str] = field(default_factory=dict)

    def merge(self, other: "Closure") -> None:
        self.modules.update(other.modules)
        self.distributions.update(other.distributions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "modules": dict(sorted(self.modules.items())),
            "distributions": dict(sorted(self.distributions.items())),
        }


class ClosureFinder:
    """Finds import closures for one search path, memoising lookups for the life of one plan."""

    def __init__(self, memo: "DigestMemo", search_path: list[str]):
        self.memo = memo
        self.search = [p for p in dict.fromkeys(os.path.abspath(p) for p in search_path if p) if os.path.isdir(p)]
        self._tops: dict[str, Path | None] = {}
        self._listings: dict[str, set[str]] = {}
        self._files: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {}
        self._resolved: dict[tuple[str, bool], tuple[dict[str, str], list[tuple[str, Path]]]] = {}
        self._dists: dict[str, dict[str, list[str]]] = {}

    def of_file(self, file: Path, name: str) -> Closure:
        """The closure of the module `name` whose source is `file`."""
        closure = Closure()
        seen: set[str] = set()
        stack = [(name, Path(file))]
        while stack:
            mod, path = stack.pop()
            if mod in seen:
                continue
            seen.add(mod)
            digest, imports = self._read(path)
            closure.modules[mod] = digest
            package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
            for target, names in imports:
                absolute = _absolute(target, package)
                if absolute is None:
                    continue
                self._add(absolute, closure, stack, required=True)
                for sub in names:
                    self._add(f"{absolute}.{sub}" if absolute else sub, closure, stack, required=False)
        return closure

    def _read(self, path: Path) -> tuple[str, list[tuple[str, list[str]]]]:
        """A file's digest and import list (memoised by its stamp; once per finder)."""
        key = str(path)
        if key not in self._files:
            self._files[key] = (self.memo.file_digest(path), _imports(self.memo, path))
        return self._files[key]

    def top_level(self, top: str) -> Path | None:
        """Where the top-level module `top` lives, as import finds it (pyrefs.find_top_level)."""
        if top not in self._tops:
            self._tops[top] = find_top_level(top, self.search, self.look)
        return self._tops[top]

    def look(self, directory: Path, part: str) -> tuple[Path, bool] | None:
        """pyrefs.module_in, with each folder listed once per finder."""
        key = str(directory)
        if key not in self._listings:
            try:
                self._listings[key] = set(os.listdir(directory))
            except OSError:
                self._listings[key] = set()
        return module_in(directory, part, self._listings[key])

    def _add(self, dotted: str, closure: Closure, stack: list[tuple[str, Path]], required: bool) -> None:
        """Follow `dotted` (a module, or for `from x import y` maybe a name inside x: `required=False`)."""
        key = (dotted, required)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(dotted, required)
        dists, files = self._resolved[key]
        closure.distributions.update(dists)
        stack.extend(files)

    def _resolve(self, dotted: str, required: bool) -> tuple[dict[str, str], list[tuple[str, Path]]]:
        """(distributions, local (module, file) pairs) that importing `dotted` brings in."""
        parts = dotted.split(".")
        top = parts[0]
        if not top or top == "__future__":
            return {}, []
        if top in sys.builtin_module_names or (top in sys.stdlib_module_names and not self._shadowed(top)):
            return {}, []
        location = self.top_level(top)
        if location is None:
            return ({top: MISSING} if required else {}), []
        if location == _ENGINE or location.resolve() == _ENGINE:
            return {}, []
        owners = self._distributions(parts, location)
        dists = {name: version for name, version, origin in owners if origin != "local"}
        if owners and len(dists) == len(owners):
            return dists, []
        files: list[tuple[str, Path]] = []
        current: Path | None = location
        for i in range(len(parts)):
            if i:
                child = self.look(current, parts[i]) if current is not None and current.is_dir() else None
                if child is None:
                    break  # a name defined inside the module, not a submodule
                current = child[0]
            assert current is not None
            source = current / "__init__.py" if current.is_dir() else current
            if source.is_file():  # .py source or an extension module (hashed, not parsed)
                files.append((".".join(parts[: i + 1]), source))
        return dists, files

    def _shadowed(self, top: str) -> bool:
        """A standard-library name that the recipe's own folder (first on the path) defines anew."""
        found = self.look(Path(self.search[0]), top) if self.search else None
        return found is not None and not found[1]

    def _distributions(self, parts: list[str], location: Path) -> list[list[str]]:
        """[name, version, "local" | "index"] of each distribution in `location`'s folder that provides
        `parts` (several only for a bare namespace package such as `nvidia`)."""
        folder = str(location.parent)
        if folder not in self._dists:
            self._dists[folder] = json.loads(self.memo.derived(Path(folder), "distributions", distribution_map))
        entry = self._dists[folder].get(parts[0])
        if isinstance(entry, dict):  # a namespace shared by distributions: the subpackage decides
            owner = entry.get(".".join(parts[:2])) if len(parts) > 1 else None
            return [owner] if owner else list(entry["*"])
        return [entry] if entry else []


def closure_of_module(finder: ClosureFinder, module: str) -> tuple[Closure, Path | None]:
    """The closure of an importable module name, and its source file (None: not Python source here).

    A module of an installed distribution is that distribution; a local one is followed.
    """
    closure = Closure()
    stack: list[tuple[str, Path]] = []
    finder._add(module, closure, stack, required=True)
    if not stack:
        return closure, None
    source = stack[-1][1]
    for name, path in stack:
        closure.merge(finder.of_file(path, name))
    return closure, source


def _imports(memo: "DigestMemo", path: Path) -> list[tuple[str, list[str]]]:
    return [(target, names) for target, names in json.loads(memo.derived(path, "imports", imports_json))]


def imports_json(path: Path) -> str:
    """Every import a module can execute, as JSON [[module, [names]]]; relative modules keep their dots."""
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return "[]"
    found: list[tuple[str, list[str]]] = []
    for node in _executable_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.append((module, sorted(a.name for a in node.names if a.name != "*")))
    return json.dumps(sorted(set((m, tuple(n)) for m, n in found)))


def _executable_nodes(tree: "ast.AST") -> list["ast.AST"]:
    """Every node except those under `if TYPE_CHECKING:` (imports only type checkers run)."""
    import ast

    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                todo += child.orelse
            else:
                todo.append(child)
    return out


def _is_type_checking(test: "ast.expr") -> bool:
    import ast

    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(target: str, package: str) -> str | None:
    """`..x` inside `package` -> its absolute name ("" for `from . import y` at a top-level package)."""
    level = len(target) - len(target.lstrip("."))
    if not level:
        return target
    base = package.split(".") if package else []
    if level - 1 > len(base) or (not base and level):
        return None  # a relative import outside any package: it cannot run
    base = base[: len(base) - (level - 1)]
    rest = target[level:]
    return ".".join(base + ([rest] if rest else []))


def code_closure(
    ref: str, base_dir: Path, memo: "DigestMemo", source: str | None = None, exclude: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """What a recipe's `module:function` or `path/to/file.py:function` runs, without importing it.

    The module is found as the stage will import it (the recipe's folder first,
    then `sys.path`) and must define the function (checked with `ast`); a
    missing module, file or function raises (ModuleNotFoundError,
    FileNotFoundError, AttributeError). A file reference is named by its path
    relative to the recipe. `source` (a folder or file relative to the recipe)
    adds the digest of every file in it, for code and data `ast` cannot see.
    """
    from pipeline.keys.pyrefs import check_name, defined_names, find_module

    module, _, attr = ref.partition(":")
    base = Path(base_dir).resolve()
    finder = finder_for(memo, [str(base), *sys.path])
    if module.endswith(".py") or "/" in module:
        file = (base / module).resolve()
        if not file.is_file():
            raise FileNotFoundError(f"no such file {module!r} (looked for {file})")
        python_source: Path | None = file
        closure = finder.of_file(file, _relative_name(file, base))
    else:
        # ModuleNotFoundError naming the missing part; the source is read even in an installed
        # distribution, whose closure is only its version: a typo there must not wait for torch to load
        _, found = find_module(module, finder.search, finder.look)
        closure, python_source = closure_of_module(finder, module)
        python_source = python_source or found
    if attr:
        check_name(python_source, attr, module, lambda p: memo.derived(p, "module_names", defined_names))
    out = closure.as_dict()
    if source is not None:
        root = (base / source).resolve()
        if not root.exists():
            raise FileNotFoundError(f"model.source {source!r} does not exist (looked for {root})")
        out["source"] = source_manifest(root, memo, exclude)
    return out


def source_manifest(root: Path, memo: "DigestMemo", exclude: tuple[Path, ...] = ()) -> dict[str, str]:
    """{path relative to `root`: digest} of every file `model.source` names, so a miss names the file.

    Left out: what pipeline itself writes beside recipes (`*.lock` files, the
    cache when it lives there: `exclude`), hidden files and folders (.git,
    editor swap files) and bytecode, which would otherwise make the recipe
    stale after every run.
    """
    if root.is_file():
        return {root.name: memo.file_digest(root)}
    skip = {str(p.resolve()) for p in exclude}
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and d != "__pycache__" and os.path.join(dirpath, d) not in skip
        )
        for name in filenames:
            if name.startswith(".") or name.endswith((".lock", ".pyc")):
                continue
            path = Path(dirpath) / name
            out[path.relative_to(root).as_posix()] = memo.file_digest(path)
    return dict(sorted(out.items()))


def _relative_name(file: Path, base: Path) -> str:
    """A file's name in a closure: its path relative to the recipe, never absolute."""
    return os.path.relpath(file, base).replace(os.sep, "/")


def kind_closure(module: str, file: Path, memo: "DigestMemo") -> dict[str, Any]:
    """A stage kind's code: its module (`module`, at `file`), the packages above it (their `__init__`
    runs first) and everything they import."""
    root = Path(file).resolve().parent
    for _ in range(module.count(".") + (1 if Path(file).name == "__init__.py" else 0)):
        root = root.parent
    finder = finder_for(memo, [str(root), *sys.path])
    closure = Closure()
    parents = module.split(".")[:-1]
    for i in range(len(parents)):
        init = root.joinpath(*parents[: i + 1], "__init__.py")
        if init.is_file():
            closure.merge(finder.of_file(init, ".".join(parents[: i + 1])))
    closure.merge(finder.of_file(Path(file), module))
    return closure.as_dict()


def finder_for(memo: "DigestMemo", search_path: list[str]) -> ClosureFinder:
    """One finder per search path for the life of `memo` (one plan): kinds share their lookups."""
    finders = memo.scratch.setdefault("closure_finders", {})
    key = tuple(search_path)
    if key not in finders:
        finders[key] = ClosureFinder(memo, search_path)
    return finders[key]
