"""The stage contract: what the engine knows about a stage kind, and nothing more.

A stage kind is a pure function of (params, input artifacts, toolchain). The
engine hashes exactly those into the stage's key, runs `run(ctx)` in a worker
process inside a fresh directory, and publishes what it wrote. Stage modules
must stay cheap to import: heavy libraries are imported inside `run()`.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Protocol

from pydantic import BaseModel

from pipeline.pyrefs import NameNotDefined  # noqa: F401 - re-exported: what KeyContext.code_digest raises for
from pipeline.schema import ModelSpec, Strict  # a function the recipe names but its module does not define


class Params(Strict):
    """Base for a kind's params: unknown keys are errors, values are validated (no bool for a number)."""


@dataclass(frozen=True)
class InputSpec:
    """An input a kind reads: an artifact (file or directory) or a dataset."""

    kind: Literal["artifact", "data"] = "artifact"
    optional: bool = False
    description: str = ""


@dataclass(frozen=True)
class OutputSpec:
    """An output a kind writes at `path` inside its output directory."""

    path: str
    is_dir: bool = False
    description: str = ""


@dataclass(frozen=True)
class DatasetInput:
    """A `data.NAME` input as the stage sees it: the validated spec, where relative paths start (made
    absolute here: the stage runs in another directory) and the kind's class (`module:qualname`, resolved
    by the engine; None means the entry point named by `spec["kind"]`)."""

    name: str
    spec: dict[str, Any]
    base_dir: Path
    reader: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_dir", Path(self.base_dir).resolve())

    @property
    def label(self) -> str:
        """How errors name it: `data.calib`."""
        return f"data.{self.name}"


class RecipeValueError(ValueError):
    """Raised by `Stage.fingerprint` when a recipe value names something that does not exist; `field`
    is where it is in the recipe (e.g. ("model", "factory")), so the error points at that line."""

    def __init__(self, field: tuple[str, ...], message: str):
        super().__init__(message)
        self.field = field


class KeyContext(Protocol):
    """What `Stage.fingerprint` may use to add digests to the key (memoised by the engine)."""

    recipe_dir: Path

    def file_digest(self, path: Path) -> str: ...

    def code_digest(self, ref: str, source: str | None = None) -> dict[str, Any]:
        """The import closure of `module:function` (local modules by digest, distributions by version)."""
        ...


ProgressFn = Callable[[float, "float | None", str], None]


def _no_progress(done: float, total: float | None = None, desc: str = "") -> None:
    return None


@dataclass
class StageContext:
    """Everything `run()` may read, and the one directory it may write."""

    stage: str
    params: Any
    inputs: dict[str, Any]  # artifact inputs: Path; data inputs: DatasetInput
    outdir: Path
    recipe_dir: Path
    model: ModelSpec | None = None
    progress: ProgressFn = field(default=_no_progress, repr=False)

    def output(self, name: str, kind: type["Stage"]) -> Path:
        return self.outdir / kind.outputs[name].path


class Stage:
    """Base class of every stage kind. Subclasses set the class attributes and `run`."""

    kind: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = Params
    inputs: ClassVar[dict[str, InputSpec]] = {}
    outputs: ClassVar[dict[str, OutputSpec]] = {}
    # Distributions the kind imports: their versions enter the key, and their
    # absence makes the kind unavailable with a hint to install `extra`.
    packages: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    # Reads the recipe's `model:` section; its validated form enters the key,
    # limited to `model_fields` when a kind needs only some (e.g. shapes).
    uses_model: ClassVar[bool] = False
    model_fields: ClassVar[tuple[str, ...] | None] = None
    # Holds the machine alone while it runs (stages that time things).
    exclusive: ClassVar[bool] = False
    # The code that enters the key is derived: the kind's module and its import closure
    # (pipeline/closure.py). Bump `version` when a change outside that closure alters results.

    def unmet(self) -> str | None:
        """Why this kind cannot run here, or None. Must not import heavy libraries."""
        missing = [p for p in self.packages if not _installed(p)]
        if not missing:
            return None
        hint = f": pip install '.[{self.extra}]'" if self.extra else ""
        return f"needs {', '.join(missing)}{hint}"

    def toolchain(self) -> dict[str, str]:
        """Versions (and hardware identity) the outputs depend on; enters the key."""
        return {p: _version(p) for p in self.packages}

    def fingerprint(self, params: Any, model: ModelSpec | None, keys: KeyContext) -> dict[str, Any]:
        """Extra key material a kind derives from its params (code it loads, files it reads)."""
        return {}

    def run(self, ctx: StageContext) -> dict[str, Any] | None:
        """Read `ctx.inputs`, write every declared output under `ctx.outdir`; return summary figures."""
        raise NotImplementedError


def default_output(kind: type[Stage]) -> str:
    """The output a bare `stage` reference means: `model` if declared, else the first."""
    if "model" in kind.outputs:
        return "model"
    return next(iter(kind.outputs))


def _installed(dist: str) -> bool:
    return _version(dist) != "missing"


@functools.lru_cache(maxsize=None)
def _version(dist: str) -> str:
    """A distribution's version (memoised: each lookup scans site-packages, and every stage asks)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"
