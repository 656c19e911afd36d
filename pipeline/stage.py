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
from typing import Any, Callable, ClassVar, Generic, Literal, Mapping, Protocol, TypeVar, get_args, get_origin

from pydantic import BaseModel

from pipeline.errors import NameNotDefined  # noqa: F401 - re-exported: what KeyContext.code_digest raises for
from pipeline.schema import ModelSpec, Strict  # a function the recipe names but its module does not define


class Params(Strict):
    """Base for a kind's params: unknown keys are errors, values are validated (no bool for a number)."""


@dataclass(frozen=True)
class InputSpec:
    """An input a kind reads: an artifact (file or directory) or a dataset."""

    kind: Literal["artifact", "data"] = "artifact"
    optional: bool = False
    description: str = ""
    # Takes a list of artifacts (`[build@*, openvino]`: a fan-in of a matrix stage's variants and others),
    # read with `StageContext.members`; under --skip-unavailable the members that cannot be built are left out.
    many: bool = False


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


class HardwareTarget(Protocol):
    """A hardware target a stage's params declare (a GPU type and the toolchain on it). The engine derives
    everything from it: the key holds its identity instead of this machine's (so a machine without that
    hardware computes the key and can be served the result), a cluster places the stage on a node labelled
    with its accelerator type, a machine not of it cannot run the stage, and a stage that reads its results
    and leaves its own target unset takes it (`Stage.with_target`)."""

    @property
    def accelerator(self) -> str:
        """The accelerator type a scheduler matches (Ray's name: "H100")."""
        ...

    def identity(self) -> dict[str, str]:
        """The key's hardware part: the same on every machine."""
        ...

    def mismatch(self) -> str | None:
        """Why this machine is not of the target (it probes what it has), in one line; None when it is."""
        ...


class KeyContext(Protocol):
    """What `Stage.fingerprint` may use to add digests to the key (memoised by the engine)."""

    recipe_dir: Path

    def file_digest(self, path: Path) -> str: ...

    def code_digest(self, ref: str, source: str | None = None) -> dict[str, Any]:
        """The import closure of `module:function` (local modules by digest, distributions by version)."""
        ...


@dataclass(frozen=True)
class Trial:
    """One sub-result a stage computed on the way to its outputs (a search's trial), cached under its own key:
    H(the stage's key without its `trial_neutral` params, the trial's identity)."""

    label: str
    key: str
    path: Path  # the directory `produce` wrote; read-only when it came from the cache
    summary: dict[str, Any]
    cached: bool
    seconds: float  # what producing it took (for a cached trial: what it took then)

    def row(self) -> dict[str, Any]:
        """How the run record and `--json` list it."""
        return {"label": self.label, "key": self.key[:12], "cached": self.cached, "seconds": round(self.seconds, 3)}


Produce = Callable[[Path], "Mapping[str, Any] | None"]


class Trials(Protocol):
    """Where a stage keeps its trials (`ctx.trials`): a killed run's finished trials are not recomputed, and a
    trial reached again by another path or another budget is served from the cache."""

    done: list[Trial]  # every trial asked for in this run, in order

    def run(self, label: str, identity: Mapping[str, Any], produce: Produce) -> Trial:
        """The trial `identity` names (JSON-able: everything the trial computes from besides the stage's own
        key), from the cache, or made by `produce(directory)`, which writes its files there and returns the
        trial's summary (JSON-able)."""
        ...


class UncachedTrials:
    """Trials computed every time, in a temporary directory made when the first one is: a stage run outside
    the engine (a unit test)."""

    def __init__(self, root: Path | None = None):
        self.root = root
        self.done: list[Trial] = []

    def run(self, label: str, identity: Mapping[str, Any], produce: Produce) -> Trial:
        import hashlib
        import json
        import tempfile
        import time

        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="trials-"))
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
        path = self.root / f"{len(self.done):03d}-{key[:12]}"
        path.mkdir(parents=True)
        started = time.perf_counter()
        made = dict(produce(path) or {})  # JSON-safe, as the cache keeps it
        summary = json.loads(json.dumps(made, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
        trial = Trial(label, key, path, summary, False, time.perf_counter() - started)
        self.done.append(trial)
        return trial


ProgressFn = Callable[[float, "float | None", str], None]


def _no_progress(done: float, total: float | None = None, desc: str = "") -> None:
    return None


P = TypeVar("P", bound=BaseModel)


@dataclass
class StageContext(Generic[P]):
    """Everything `run()` may read, and the one directory it may write. `params` has the kind's own
    `Params` type; read inputs with `path()` and `dataset()`, which say what is wrong when a name is."""

    stage: str
    params: P
    inputs: dict[str, Path | DatasetInput]  # declared inputs the recipe connects; optional ones may be absent
    outdir: Path
    recipe_dir: Path
    model: ModelSpec | None = None
    progress: ProgressFn = field(default=_no_progress, repr=False)
    warnings: list[str] = field(default_factory=list, repr=False)  # what `warn` said, in order
    outputs: dict[str, OutputSpec] = field(default_factory=dict, repr=False)  # the kind's declared outputs
    # Where tuning aids that outlive a run may be kept (TensorRT's timing cache): outside every key, so
    # nothing there may change a result, only how long it takes. None: the kind keeps none.
    side_cache: Path | None = None
    # Sub-results cached under their own keys (a search's trials): see `Trials`.
    trials: Trials = field(default_factory=UncachedTrials, repr=False)

    def __post_init__(self) -> None:
        self.inputs = {k: v if isinstance(v, DatasetInput) else Path(v) for k, v in self.inputs.items()}

    def warn(self, message: str) -> None:
        """Tell the user something that may make this result unfit (calibrated on 4 samples, noisy timing).

        Printed to the stage's log now, and kept with the result: the console shows it under the stage's
        row at the end of the run (cached or not), and the `--json` record and `pipeline summary` carry it.
        A message said twice is kept once."""
        line = " ".join(message.split())
        if line not in self.warnings:
            self.warnings.append(line)
            print(f"WARNING: {self.stage}: {line}", flush=True)

    def path(self, name: str) -> Path:
        """The artifact (file or directory) connected to input `name`."""
        value = self._input(name)
        if not isinstance(value, Path):
            raise TypeError(f"stage {self.stage}: input {name!r} is a dataset ({value.label}), not an artifact")
        return value

    def dataset(self, name: str) -> DatasetInput:
        """The `data.NAME` entry connected to input `name`."""
        value = self._input(name)
        if not isinstance(value, DatasetInput):
            raise TypeError(f"stage {self.stage}: input {name!r} is an artifact ({value.name}), not a dataset")
        return value

    def members(self, name: str) -> dict[str, Path]:
        """The artifacts connected to the many-input `name` (`InputSpec.many`), by what the recipe calls each
        (a stage, `build@fp16-T4`, or a path as written), in recipe order; empty when none is connected."""
        found = {k[len(name) + 1 : -1]: v for k, v in self.inputs.items() if member_of(k) == name}
        for label, value in found.items():
            if not isinstance(value, Path):
                raise TypeError(f"stage {self.stage}: input {name}[{label}] is a dataset, not an artifact")
        return {k: v for k, v in found.items() if isinstance(v, Path)}

    def optional_path(self, name: str) -> Path | None:
        """`path(name)`, or None when the recipe leaves that optional input out."""
        return self.path(name) if name in self.inputs else None

    def optional_dataset(self, name: str) -> DatasetInput | None:
        """`dataset(name)`, or None when the recipe leaves that optional input out."""
        return self.dataset(name) if name in self.inputs else None

    def output(self, name: str) -> Path:
        """Where the kind's declared output `name` goes (its path is spelled once, in `outputs`)."""
        try:
            return self.outdir / self.outputs[name].path
        except KeyError:
            declared = ", ".join(sorted(self.outputs)) or "none"
            raise LookupError(f"stage {self.stage}: no output {name!r} declared (outputs: {declared})") from None

    def _input(self, name: str) -> Path | DatasetInput:
        try:
            return self.inputs[name]
        except KeyError:
            given = ", ".join(sorted(self.inputs)) or "none"
            raise LookupError(f"stage {self.stage}: no input {name!r} connected (inputs: {given})") from None


class Stage(Generic[P]):
    """Base class of every stage kind. Subclasses set the class attributes and `run`; a kind written
    `class Fuse(Stage[FuseParams])` gets `Params = FuseParams` and a `ctx.params` typed as such."""

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
    # The fields of the recipe's `model:` section the kind reads (e.g. its tensors and dims): their validated
    # form enters the key, and a recipe without `model:` is an error for it. Empty: it reads none.
    model_fields: ClassVar[tuple[str, ...]] = ()
    # Holds the machine alone while it runs (stages that time things).
    exclusive: ClassVar[bool] = False
    # Runs in a worker process of its own, retired when it ends: for a kind whose native libraries break others
    # loaded in the same process (after TensorFlow, importing torch's triton or paddle crashes the process).
    own_process: ClassVar[bool] = False
    # Its outputs are what a recipe ships (engines, and the reports that vouch for them): a run the remote
    # cache serves downloads them even when no stage below needs them (other intermediates stay remote).
    deliverable: ClassVar[bool] = False
    # Params that decide which trials run or which one wins, never what a trial computes (a search's budget
    # and gates): left out of every trial's key (`Trials`), so raising the budget reuses the trials done.
    trial_neutral: ClassVar[tuple[str, ...]] = ()
    # The code that enters the key is derived: the kind's module and its import closure
    # (pipeline/keys/closure.py). Bump `version` when a change outside that closure alters results.

    def unmet(self, params: P | None = None) -> str | None:
        """Why this kind cannot run here (with these params, when given), or None. Must not import heavy
        libraries. A stage that cannot run here is still served from a cache when its key is there."""
        missing = [p for p in self.packages if not _installed(p)]
        if not missing:
            return None
        hint = f": pip install '.[{self.extra}]'" if self.extra else ""
        return f"needs {', '.join(missing)}{hint}"

    def toolchain(self, params: P | None = None) -> dict[str, str]:
        """Software versions the outputs depend on; enters the key (and a cluster node must have the same)."""
        return {p: installed_version(p) for p in self.packages}

    def hardware(self, params: P) -> dict[str, str]:
        """This machine's identity as far as the outputs depend on it (a GPU, the CPU's ISA); the key's
        hardware part when the params declare no target (with one, the target's identity stands instead)."""
        return {}

    def target(self, params: P) -> HardwareTarget | None:
        """The hardware target the params declare, or None (this machine). See `HardwareTarget`."""
        return None

    def with_target(self, params: P, target: HardwareTarget) -> P | None:
        """These params with `target`, inherited from a stage this one reads that is built for it (a check of
        a TensorRT engine runs on that GPU); None when the kind takes no target from its inputs."""
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "uses_model" in cls.__dict__:
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__}: `uses_model` is gone; name the `model:` fields the kind "
                "reads in `model_fields` (it reads the section when it names any)"
            )
        declared = [get_args(b)[0] for b in cls.__dict__.get("__orig_bases__", ()) if get_origin(b) is Stage]
        if not declared or not isinstance(declared[0], type):
            return
        if "Params" in cls.__dict__ and cls.__dict__["Params"] is not declared[0]:
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__}: Params is {cls.__dict__['Params'].__name__} "
                f"but the class is declared Stage[{declared[0].__name__}]"
            )
        cls.Params = declared[0]
        unknown = [f for f in cls.trial_neutral if f not in cls.Params.model_fields]
        if unknown:
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}: trial_neutral names no param {', '.join(unknown)}")

    @classmethod
    def uses_model(cls) -> bool:
        """Whether the kind reads the recipe's `model:` section (it names fields of it)."""
        return bool(cls.model_fields)

    def members_problem(self, params: P, members: Mapping[str, list[str]]) -> tuple[tuple[str, ...], str] | None:
        """What is wrong with params that name the members of a many-input (`names: {engine@fp32: ...}`), given the
        labels the recipe connects to each: where in `with:` and one line, or None. Asked when the recipe loads, so
        a typo is a recipe error with its line rather than a failure once every engine is built; at run time an
        entry naming no member that `ctx.members` gives is one `--skip-unavailable` left out."""
        return None

    def fingerprint(self, params: P, model: ModelSpec | None, keys: KeyContext) -> dict[str, Any]:
        """Extra key material a kind derives from its params (code it loads, files it reads)."""
        return {}

    def run(self, ctx: StageContext[P]) -> dict[str, Any] | None:
        """Read `ctx.inputs`, write every declared output under `ctx.outdir`; return summary figures."""
        raise NotImplementedError


def member_input(name: str, label: str) -> str:
    """How one member of the many-input `name` is named among a stage's inputs and in its key: `models[build@fp16]`."""
    return f"{name}[{label}]"


def member_of(input_key: str) -> str | None:
    """The many-input a stage's input key belongs to (`models[build@fp16]` -> `models`), or None."""
    name, bracket, rest = input_key.partition("[")
    return name if bracket and rest.endswith("]") else None


def default_output(kind: type[Stage]) -> str:
    """The output a bare `stage` reference means: `model` if declared, else the first."""
    if "model" in kind.outputs:
        return "model"
    return next(iter(kind.outputs))


def _installed(dist: str) -> bool:
    return installed_version(dist) != "missing"


@functools.lru_cache(maxsize=None)
def installed_version(dist: str) -> str:
    """A distribution's version, or "missing" (memoised: each lookup scans site-packages, ~2 ms, and every
    stage of every plan asks: a kind's own `toolchain` should use this too)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"
