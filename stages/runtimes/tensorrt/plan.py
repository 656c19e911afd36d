"""A TensorRT build as plain data: what `runtimes.tensorrt.build` will ask the API for, decided without tensorrt.

`build_plan(params, model, probe, onnx_path, cache_dir)` turns the stage's
params, the recipe's tensors and dims, and the probed host into a frozen
`BuildPlan`: network flags, optimization profiles, memory pools, flags and
levels, the timing-cache file, and the equivalent `trtexec` command line. It
imports nothing heavy and touches no GPU, so every decision can be tested on a
machine without one, and the same plan is what the engine.json sidecar records.

Strong typing: TensorRT 11 builds every network strongly typed (the
STRONGLY_TYPED creation flag is deprecated and ignored there, and trtexec's
`--stronglyTyped` is a no-op); TensorRT 10 needs the flag. The plan sets it for
10.x only, so one code path serves both, and precision always comes from the
ONNX (Q/DQ nodes for INT8, an FP16 graph for FP16), never from builder flags.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from pipeline.schema import ModelSpec
    from stages.runtimes.tensorrt.probe import GpuProbe

MIN_TENSORRT = (10, 0)
TILING_SINCE = (10, 8)  # IBuilderConfig.tiling_optimization_level, trtexec --tilingOptimizationLevel
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere+": "AMPERE_PLUS"}  # trtexec spelling -> enum member
TILING_LEVELS = {"none": "NONE", "fast": "FAST", "moderate": "MODERATE", "full": "FULL"}
PROFILING_VERBOSITY = {"layer_names_only": "LAYER_NAMES_ONLY", "detailed": "DETAILED", "none": "NONE"}
TIMING_CACHE_DIR = "tensorrt-timing"

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRange:
    """One input's optimization-profile shapes."""

    min: Shape
    opt: Shape
    max: Shape

    @property
    def static(self) -> bool:
        return self.min == self.opt == self.max


@dataclass(frozen=True)
class BuildPlan:
    """Everything the build sets, by TensorRT enum member names; see `runtimes.tensorrt.build.engine_from_plan`."""

    onnx_path: str
    tensorrt: str
    tensorrt_major: int
    strongly_typed: bool  # always True; recorded for the sidecar
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag members
    builder_flags: tuple[str, ...]  # BuilderFlag members to set
    cleared_flags: tuple[str, ...]  # BuilderFlag members to clear (TF32 when tf32 is off)
    memory_pools: tuple[tuple[str, int], ...]  # (MemoryPoolType member, bytes)
    builder_optimization_level: int
    hardware_compatibility: str  # HardwareCompatibilityLevel member
    max_aux_streams: int | None
    tiling_optimization_level: str | None  # TilingOptimizationLevel member; None: leave TensorRT's default
    l2_limit_for_tiling: int | None  # bytes
    avg_timing_iterations: int | None
    profiling_verbosity: str  # ProfilingVerbosity member
    profiles: tuple[tuple[str, ShapeRange], ...]  # one optimization profile: input -> ranges
    profile_copies: int  # the profile added this many times: one per execution context in concurrent use
    dynamic_inputs: tuple[str, ...]  # inputs with named dims in the recipe (or overridden): trtexec shapes them
    timing_cache: str | None  # side-cache file, outside every key
    # With sparse_weights: (weights that are 2:4 along their input dim, MatMul/Gemm/Conv weights) in the ONNX, by
    # `runtimes.onnx.sparsity` (None: flag off, or no file to read), and the one-line warnings of the plan.
    sparse_2_4: tuple[int, int] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def version_compatible(self) -> bool:
        return "VERSION_COMPATIBLE" in self.builder_flags

    def profile(self) -> dict[str, ShapeRange]:
        return dict(self.profiles)

    def trtexec_args(
        self, onnx: str | None = None, engine: str = "model.engine", layer_info: str | None = None
    ) -> list[str]:
        """The trtexec invocation that builds the same engine with the installed TensorRT."""
        args = ["trtexec", f"--onnx={onnx or self.onnx_path}", f"--saveEngine={engine}"]
        if "STRONGLY_TYPED" in self.network_flags:
            args.append("--stronglyTyped")
        dynamic = [(n, r) for n, r in self.profiles if n in self.dynamic_inputs]
        for _ in range(self.profile_copies if dynamic else 0):  # each min/opt/max triple adds a profile
            for flag, point in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
                args.append(
                    f"{flag}="
                    + ",".join(f"{_trtexec_name(n)}:{'x'.join(map(str, getattr(r, point)))}" for n, r in dynamic)
                )
        for pool, size in self.memory_pools:
            args.append(f"--memPoolSize={pool.lower()}:{size // 2**20}M")
        args.append(f"--builderOptimizationLevel={self.builder_optimization_level}")
        if self.timing_cache:
            args.append(f"--timingCacheFile={self.timing_cache}")
        if self.version_compatible:
            args.append("--versionCompatible")
        if "EXCLUDE_LEAN_RUNTIME" in self.builder_flags:
            args.append("--excludeLeanRuntime")
        if self.hardware_compatibility == "AMPERE_PLUS":
            args.append("--hardwareCompatibilityLevel=ampere+")
        if self.max_aux_streams is not None:
            args.append(f"--maxAuxStreams={self.max_aux_streams}")
        if self.tiling_optimization_level is not None:
            args.append(
                f"--tilingOptimizationLevel={list(TILING_LEVELS.values()).index(self.tiling_optimization_level)}"
            )
            if self.l2_limit_for_tiling is not None:
                args.append(f"--l2LimitForTiling={self.l2_limit_for_tiling}")
        if self.avg_timing_iterations is not None:
            args.append(f"--avgTiming={self.avg_timing_iterations}")
        if "SPARSE_WEIGHTS" in self.builder_flags:
            args.append("--sparsity=enable")
        if "TF32" in self.cleared_flags:
            args.append("--noTF32")
        args.append(f"--profilingVerbosity={_trtexec_verbosity(self.profiling_verbosity)}")
        if layer_info:
            args.append(f"--exportLayerInfo={layer_info}")
        args.append("--skipInference")
        return args

    @property
    def trtexec(self) -> list[str]:
        return self.trtexec_args()

    @property
    def trtexec_line(self) -> str:
        return shlex.join(self.trtexec)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profiles"] = {n: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)} for n, r in self.profiles}
        d["memory_pools"] = {p: s for p, s in self.memory_pools}
        return d


def build_plan(
    params: Any, model: "ModelSpec | None", probe: "GpuProbe", onnx_path: str | Path, cache_dir: str | Path | None
) -> BuildPlan:
    """The plan for building `onnx_path` on the probed host; ValueError for settings this TensorRT lacks."""
    if probe.tensorrt is None:
        raise ValueError("no TensorRT installed: cannot plan a build")
    version = parse_version(probe.tensorrt)
    if version == (0, 0):
        raise ValueError(
            f"cannot tell the installed TensorRT version ({probe.tensorrt!r}: no tensorrt distribution "
            "metadata); the plan depends on it (STRONGLY_TYPED flag for 10.x, tiling since 10.8)"
        )
    if version < MIN_TENSORRT:
        raise ValueError(f"TensorRT {probe.tensorrt} is too old: strongly typed builds need TensorRT >= 10.0")
    flags = []
    if params.version_compatible:
        flags.append("VERSION_COMPATIBLE")
        if params.exclude_lean_runtime:
            flags.append("EXCLUDE_LEAN_RUNTIME")
    elif params.exclude_lean_runtime:
        raise ValueError("exclude_lean_runtime needs version_compatible: true")
    sparse: tuple[int, int] | None = None
    warnings: tuple[str, ...] = ()
    if params.sparse_weights:
        flags.append("SPARSE_WEIGHTS")
        sparse, warnings = sparse_input(onnx_path)
    tiling = l2 = None
    if params.tiling_optimization_level != "none":
        if version < TILING_SINCE:
            raise ValueError(f"tiling_optimization_level needs TensorRT >= 10.8 (installed: {probe.tensorrt})")
        tiling = TILING_LEVELS[params.tiling_optimization_level]
        l2 = params.l2_limit_for_tiling_mb * 2**20 if params.l2_limit_for_tiling_mb is not None else None
    if (
        params.hardware_compatibility == "ampere+"
        and probe.compute_capability
        and parse_version(probe.compute_capability) < (8, 0)
    ):
        raise ValueError(
            f"hardware_compatibility ampere+ needs an Ampere or newer GPU; {probe.gpu} is sm {probe.compute_capability}"
        )
    cache = None
    if params.timing_cache:
        cache = str(
            side_cache_root(Path(cache_dir) if cache_dir else None) / TIMING_CACHE_DIR / timing_cache_name(probe)
        )
    return BuildPlan(
        onnx_path=str(onnx_path),
        tensorrt=probe.tensorrt,
        tensorrt_major=version[0],
        strongly_typed=True,
        network_flags=("STRONGLY_TYPED",) if version[0] < 11 else (),
        builder_flags=tuple(flags),
        cleared_flags=() if params.tf32 else ("TF32",),
        memory_pools=(("WORKSPACE", params.memory_pool_mb * 2**20),) if params.memory_pool_mb is not None else (),
        builder_optimization_level=params.builder_optimization_level,
        hardware_compatibility=HARDWARE_COMPATIBILITY[params.hardware_compatibility],
        max_aux_streams=params.max_aux_streams,
        tiling_optimization_level=tiling,
        l2_limit_for_tiling=l2,
        avg_timing_iterations=params.avg_timing_iterations,
        profiling_verbosity=PROFILING_VERBOSITY[params.profiling_verbosity],
        profiles=tuple(profiles_from_model(model, params.shapes, params.profile).items()),
        profile_copies=params.profiles,
        dynamic_inputs=_dynamic_inputs(model, params.profile),
        timing_cache=cache,
        sparse_2_4=sparse,
        warnings=warnings,
    )


def sparse_input(onnx_path: str | Path) -> tuple[tuple[int, int] | None, tuple[str, ...]]:
    """What SPARSE_WEIGHTS can use in the ONNX: (2:4 weights, weights checked) and a warning when none is 2:4,
    so a user sees the flag can do nothing; (None, ()) when there is no file to read (a plan made for show)."""
    path = Path(onnx_path)
    if not path.is_file():
        return None, ()
    from stages.runtimes.onnx.sparsity import count_sparse

    try:
        sparse, weights = count_sparse(path)
    except Exception as exc:  # noqa: BLE001 - a file TensorRT's parser will judge; here only the count is lost
        text = " ".join(str(exc).split())[:200]
        return None, (f"sparse_weights: cannot count the 2:4 weights of {path.name}: {type(exc).__name__}: {text}",)
    if sparse:
        return (sparse, weights), ()
    return (0, weights), (
        f"sparse_weights is on, but none of the {weights} MatMul/Gemm/Conv weights in {path.name} is 2:4 sparse "
        "along its input dim, so TensorRT has nothing to run sparse (prune the model with prune.sparsity first)",
    )


def profiles_from_model(
    model: "ModelSpec | None", shapes: str = "dynamic", overrides: Mapping[str, Any] | None = None
) -> dict[str, ShapeRange]:
    """Input -> (min, opt, max) from the recipe's tensors and dims; `static` pins every dim at opt.

    `overrides` (input -> object or mapping with min/opt/max lists) replace the
    derived ranges of those inputs; an override for an input the recipe does not
    declare is an error, so is one whose rank or order (min <= opt <= max) is wrong.
    """
    out: dict[str, ShapeRange] = {}
    tensors = model.tensors if model is not None else {}
    for name in tensors:
        assert model is not None
        if shapes == "static":
            opt = model.shape(name, "opt")
            out[name] = ShapeRange(opt, opt, opt)
        else:
            out[name] = ShapeRange(model.shape(name, "min"), model.shape(name, "opt"), model.shape(name, "max"))
    for name, o in (overrides or {}).items():
        get = (lambda k: o[k]) if isinstance(o, Mapping) else (lambda k: getattr(o, k))
        rng = ShapeRange(*(tuple(int(d) for d in get(k)) for k in ("min", "opt", "max")))
        if tensors and name not in tensors:
            raise ValueError(f"profile override for {name!r}, which is not in model.tensors ({', '.join(tensors)})")
        if not len(rng.min) == len(rng.opt) == len(rng.max):
            raise ValueError(f"profile override for {name!r}: min, opt and max differ in rank")
        if name in out and len(rng.opt) != len(out[name].opt):
            raise ValueError(
                f"profile override for {name!r} has rank {len(rng.opt)}, the recipe's tensor {len(out[name].opt)}"
            )
        if any(d < 1 for d in rng.min) or not all(a <= b <= c for a, b, c in zip(rng.min, rng.opt, rng.max)):
            raise ValueError(
                f"profile override for {name!r}: expected 1 <= min <= opt <= max in every dim, got "
                f"{list(rng.min)}, {list(rng.opt)}, {list(rng.max)}"
            )
        out[name] = rng
    return out


def _dynamic_inputs(model: "ModelSpec | None", overrides: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Inputs whose recipe shape names a dim (dynamic in the ONNX), then overridden ones not among them."""
    named = [
        n for n, t in (model.tensors.items() if model is not None else ()) if any(isinstance(d, str) for d in t.shape)
    ]
    return tuple(named + [n for n in (overrides or {}) if n not in named])


def timing_cache_name(probe: "GpuProbe") -> str:
    """One timing-cache file per TensorRT version, GPU model and CUDA version."""
    return (
        f"{probe.tensorrt}-{slug(probe.gpu or 'nogpu')}-{probe.sm}-cuda{probe.cuda or probe.tensorrt_cuda or 'unknown'}"
        ".cache"
    )


def side_cache_root(given: Path | None) -> Path:
    """Where side caches live: the one the engine gives the stage (`ctx.side_cache`: beside the store here,
    a node's own folder on a cluster), else ~/.cache/pipeline/side (a kind called outside the engine)."""
    if given is not None:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pipeline" / "side"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) of "10.13.0.35"; (0, 0) when unparseable ("unknown")."""
    m = re.match(r"(\d+)(?:\.(\d+))?", text)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else (0, 0)


def _trtexec_name(name: str) -> str:
    """Input names holding trtexec's separators are wrapped in single quotes, as trtexec documents."""
    return f"'{name}'" if ":" in name or "," in name else name


def _trtexec_verbosity(member: str) -> str:
    """LAYER_NAMES_ONLY -> layer_names_only (trtexec's spelling of profiling verbosity)."""
    return member.lower()
