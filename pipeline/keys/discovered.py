"""Discovered inputs: the files a stage's code opened by path, recorded while it ran, checked before its
record is served (make's `-MD` depfiles, ninja's `deps`).

A key holds the code a stage runs (its import closure) and its declared inputs, but not a weights file a
factory loads with `np.load(path)`, a table a dataset function opens, or a file inside an installed
package read without importing it. While the kind runs in its worker, a Python audit hook (`open`, which
`os.open` raises too, and `os.listdir` / `os.scandir`) notes every path opened for reading and every folder
listed; afterwards each becomes one entry of the record, `{label: digest}`:

- `file:PATH` -> the file's sha256; PATH is relative to the recipe's folder (`../weights/w.npy`) unless the
  two share nothing but `/`, so records travel between checkouts, CI runners and cluster nodes;
- `dir:PATH` -> the digest of the sorted names in a folder the code listed (a file added to an image
  folder changes what a loop over it reads);
- `dist:NAME` -> the version of the installed distribution holding a file that code outside it read
  (its files are not hashed, as in the import closure); left out where the key already names that
  distribution, and where the distribution's own code read it (torch or a weights package loading its
  own data: its version is all there is to it, as for its code).

Left out as well: files the stage also wrote (caches, scratch), its workspace and the cache root, the
system's own files (`/proc`, `/sys`, `/dev`, `/etc`, `/usr/lib`, `/usr/share`, ...), the standard library,
Python modules (read by the import system or by `inspect`: the import closure covers code), installed
distributions' metadata (`*.dist-info`: entry-point and version lookups), and paths that no longer exist
when the stage ends. Reads from native code
(a C++ library opening a path it was given) raise no audit event: such files belong in `model.source`.

Checking compares each entry with this machine (digests memoised by file stamp, as every other digest);
a changed entry, or one missing here, means the record is not served and the stage reruns, with a reason
that names the entry. A missing file is never ignored: the code read it, so a result built without it
here could differ.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pipeline
from pipeline.cache.hashing import canonical_json, sha256_bytes, sha256_file

if TYPE_CHECKING:
    from pipeline.cache.hashing import DigestMemo

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_SYSTEM = ("/proc/", "/sys/", "/dev/", "/etc/", "/usr/lib/", "/usr/lib64/", "/usr/share/", "/lib/", "/run/")
_METADATA = (".dist-info" + os.sep, ".egg-info" + os.sep)
_MODULE_SUFFIXES = (".py", ".pyc", ".pyi", ".pyd", ".so", ".pth")


class _Recorder:
    """What one stage's code opened and listed (absolute paths, as the process saw them)."""

    def __init__(self) -> None:
        self.read: dict[str, tuple[str, ...]] = {}  # path -> the files of the frames that first opened it
        self.written: set[str] = set()
        self.listed: set[str] = set()


_active: tuple[_Recorder, ...] = ()  # a stage's recording, and a trial's inside it
_lock = threading.Lock()
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook: cheap for every other event, and never raises into the code it watches."""
    recorders = _active
    if not recorders or (event != "open" and event != "os.listdir" and event != "os.scandir"):
        return
    try:
        if sys._getframe(1).f_code.co_filename.startswith("<frozen"):
            return  # the import system reading modules: the import closure covers them
        path = args[0]
        if isinstance(path, int):
            return  # an open file descriptor: its path was seen when it was opened
        text = os.path.abspath(os.fsdecode(path) if path is not None else ".")
        for recorder in recorders:
            if event == "open":
                flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
                if flags & _WRITE_FLAGS:
                    recorder.written.add(text)
                elif text not in recorder.read:
                    recorder.read[text] = _openers(sys._getframe(1))
            else:
                recorder.listed.add(text)
    except Exception:  # noqa: BLE001, S110 - a recorder must never change what the stage does
        pass


def _openers(frame: Any) -> tuple[str, ...]:
    """The source files of the innermost frames that led to an open (a library's own read is told apart
    from user code asking a library to read a file: `np.load(path)`)."""
    files: list[str] = []
    while frame is not None and len(files) < _DEPTH:
        files.append(frame.f_code.co_filename)
        frame = frame.f_back
    return tuple(files)


_DEPTH = 12


@contextmanager
def recording() -> Iterator[_Recorder]:
    """Record what the code run inside opens. The hook is installed once per process (audit hooks cannot
    be removed) and records only while a recording is active; recordings nest (a trial's inside its stage's),
    each seeing every open made while it is active."""
    global _active, _installed
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True
    recorder = _Recorder()
    _active = (*_active, recorder)
    try:
        yield recorder
    finally:
        _active = tuple(r for r in _active if r is not recorder)


def entries(recorder: _Recorder, recipe_dir: Path, leave_out: tuple[Path, ...]) -> dict[str, str]:
    """The recorded paths as `{label: digest}`, on the machine that ran the stage (see the module doc)."""
    skip = tuple(_prefix(p) for p in (*leave_out, *_python_homes()))
    search = _search_path()
    written = {os.path.realpath(p) for p in recorder.written}
    base = recipe_dir.resolve()
    out: dict[str, str] = {}
    read: dict[str, tuple[str, ...]] = {}
    for p, openers in recorder.read.items():
        read.setdefault(os.path.realpath(p), openers)
    for path in sorted(set(read) - written):
        if path.startswith(_SYSTEM) or path.endswith(_MODULE_SUFFIXES) or any(m in path for m in _METADATA):
            continue
        if not os.path.isfile(path):
            continue
        dist = distribution_of(path, search)  # before the standard library: a Python without a venv
        if dist is not None:  # keeps its site-packages inside it
            if any(distribution_of(os.path.realpath(f), search) == dist for f in read[path] if f[:1] == "/"):
                continue  # a distribution reading its own files: its version is all there is to it
            out[f"dist:{dist[0]}"] = dist[1]
        elif (path + os.sep).startswith(skip) or _library_state(path, read[path], base, skip, search):
            continue
        else:
            try:
                out[f"file:{label(path, base)}"] = sha256_file(Path(path))
            except OSError:
                continue  # gone already: nothing to check against
    for folder in sorted({os.path.realpath(p) for p in recorder.listed}):
        if folder.startswith(_SYSTEM) or (folder + os.sep).startswith(skip) or folder in search:
            continue  # a folder on sys.path is listed by whatever looks for modules or metadata
        if distribution_of(folder, search) is None and os.path.isdir(folder):
            try:
                out[f"dir:{label(folder, base)}"] = listing_digest(Path(folder))
            except OSError:
                continue
    return out


def _library_state(path: str, openers: tuple[str, ...], base: Path, skip: tuple[str, ...], search: set[str]) -> bool:
    """A file in the user's home, outside the recipe's project, that only library code asked for (no frame
    of the stage's or the user's code among those that opened it): a library's own state, such as
    OpenVINO's telemetry id, not an input the user chose."""
    home = str(Path.home())
    if not path.startswith(home + os.sep) or path.startswith(str(base.parent) + os.sep):
        return False
    for f in openers:
        if f.startswith("<") or (f + os.sep).startswith(skip):  # frozen, standard library, the engine
            continue
        if distribution_of(os.path.realpath(f), search) is None:
            return False  # user code asked for it
    return True


def without_keyed(found: dict[str, str], components: dict[str, Any]) -> dict[str, str]:
    """`found` less the distributions the key already names (in a code closure or the toolchain)."""
    keyed = {_normal(name) for name in _keyed_distributions(components)}
    return {k: v for k, v in found.items() if not (k.startswith("dist:") and _normal(k[5:]) in keyed)}


def changes(discovered: dict[str, str], recipe_dir: Path, memo: DigestMemo) -> list[str]:
    """Why a record's discovered inputs no longer hold here, one line each (empty: they all hold)."""
    reasons = []
    base = recipe_dir.resolve()
    for name, digest in sorted(discovered.items()):
        kind, _, what = name.partition(":")
        if kind == "dist":
            here = installed_version(what)
            if here != digest:
                reasons.append(f"read distribution {what}: {digest} -> {here or '(not installed)'}")
            continue
        path = Path(what) if os.path.isabs(what) else base / what
        try:
            if kind == "file":
                now = memo.file_digest(path) if path.is_file() else None
            elif kind == "dir":
                now = listing_digest(path) if path.is_dir() else None
            else:
                reasons.append(f"discovered input {name} is of a kind this version does not know")
                continue
        except OSError:
            now = None
        noun = "read file" if kind == "file" else "listed folder"
        if now is None:
            reasons.append(f"{noun} {what} is missing here")
        elif now != digest:
            reasons.append(f"{noun} {what} changed")
    return reasons


def label(path: str, base: Path) -> str:
    """A path as a record names it: relative to the recipe's folder unless they share only the root."""
    if os.path.commonpath([path, str(base)]) == os.path.sep:
        return path
    return os.path.relpath(path, base).replace(os.sep, "/")


def listing_digest(folder: Path) -> str:
    return sha256_bytes(canonical_json(sorted(os.listdir(folder))).encode())


def distribution_of(path: str, search: set[str]) -> tuple[str, str] | None:
    """(name, version) of the installed distribution whose folder (an entry of `search`, sys.path) holds
    `path`; None for local files and for a distribution installed from a local folder (its version says
    nothing of its content: its files are hashed instead)."""
    from pipeline.keys.distributions import distribution_map

    entry = max((e for e in search if path.startswith(e + os.sep)), key=len, default=None)
    if entry is None:
        return None
    parts = path[len(entry) + 1 :].split(os.sep)
    if parts[0].endswith(".dist-info"):
        name, _, version = parts[0][: -len(".dist-info")].partition("-")
        return _normal(name), version
    if entry not in _MAPS:
        _MAPS[entry] = json.loads(distribution_map(Path(entry)))
    top = parts[0][:-3] if parts[0].endswith(".py") else parts[0]
    owner = _MAPS[entry].get(top)
    if isinstance(owner, dict):  # a namespace several distributions share: the subpackage decides
        owner = owner.get(".".join([top, *parts[1:2]]))
    if not owner or owner[2] == "local":
        return None
    return str(owner[0]), str(owner[1])


def installed_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


_MAPS: dict[str, dict[str, Any]] = {}


def _search_path() -> set[str]:
    return {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}


def _python_homes() -> list[Path]:
    """The standard library (the interpreter's own files, like the import closure leaves them out) and
    the engine, whose behaviour every kind's `version` answers for."""
    import sysconfig

    paths = sysconfig.get_paths()
    return [Path(paths["stdlib"]), Path(paths["platstdlib"]), Path(pipeline.__file__).parent]


def _prefix(p: Path) -> str:
    return os.path.realpath(p).rstrip(os.sep) + os.sep


def _keyed_distributions(value: Any, under: str = "") -> set[str]:
    names: set[str] = set()
    if isinstance(value, dict):
        if under in ("distributions", "toolchain"):
            names |= {str(k) for k in value}
        for k, v in value.items():
            names |= _keyed_distributions(v, str(k))
    return names


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")
