"""The thin layer that applies a `BuildPlan` to the real TensorRT API (TensorRT 10 and 11).

`engine_from_plan(plan)` parses the ONNX into a strongly typed network, sets
the builder config the plan describes, adds one optimization profile, builds
with the shared timing cache, and inspects the result. Every decision was made
in `runtimes.tensorrt.plan`; this module only translates member names into API calls, so it
stays small and is the one place that needs a GPU. tensorrt is imported inside
the functions; the pure helpers (error formatting, the locked timing-cache
file) are testable without it. Reading an engine's inspector JSON lives in
`runtimes.tensorrt.layers`, which the runtime (`runtimes.tensorrt.runner`) shares without importing the builder.

APIs used: `trt.Builder(logger)`, `Builder.create_network(flags)`,
`trt.OnnxParser(network, logger).parse_from_file(path)` with
`get_error(i).code()/desc()/node()/node_name()/node_operator()`,
`Builder.create_builder_config()`, `IBuilderConfig.set_memory_pool_limit`,
`.builder_optimization_level`, `.set_flag/.clear_flag`, `.hardware_compatibility_level`,
`.max_aux_streams`, `.tiling_optimization_level`, `.l2_limit_for_tiling`,
`.avg_timing_iterations`, `.profiling_verbosity`, `Builder.create_optimization_profile()` +
`IOptimizationProfile.set_shape(name, min, opt, max)` + `add_optimization_profile`,
`create_timing_cache(blob)` / `set_timing_cache(cache, ignore_mismatch) -> bool` /
`get_timing_cache()`, `ITimingCache.combine/serialize/queryKeys`, `Builder.build_serialized_network`,
`trt.Runtime.deserialize_cuda_engine`, `ICudaEngine.create_engine_inspector().get_engine_information(
LayerInformationFormat.JSON)`.

Timing-cache entries are counted with `ITimingCache.queryKeys()` where the bindings have it (the
TensorRT 10.10 Python API reference documents it, the 11.4 C++ reference still lists it; bindings that
predate it lack it); elsewhere the count is None and only the serialized sizes are reported.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from stages.runtimes.tensorrt.plan import BuildPlan


@dataclass
class BuildResult:
    engine: bytes
    layers: dict[str, Any]  # the engine inspector's JSON, parsed
    io: list[dict[str, Any]]  # per I/O tensor: name, mode, dtype, shape, profile (inputs)
    seconds: float
    timing_cache: dict[str, Any] = field(default_factory=dict)  # path, entries/bytes before and after
    warnings: list[str] = field(default_factory=list)


def engine_from_plan(plan: BuildPlan, log: Callable[[str], None] = print) -> BuildResult:
    """Build the engine `plan` describes; ValueError for a model or profile TensorRT rejects."""
    import tensorrt as trt

    logger = _collecting_logger(trt, log)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(plan.onnx_path):
        raise ValueError(parser_errors([parser.get_error(i) for i in range(parser.num_errors)]))

    config = builder.create_builder_config()
    for pool, size in plan.memory_pools:
        config.set_memory_pool_limit(getattr(trt.MemoryPoolType, pool), size)
    config.builder_optimization_level = plan.builder_optimization_level
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.cleared_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, plan.hardware_compatibility)
    if plan.max_aux_streams is not None:
        config.max_aux_streams = plan.max_aux_streams
    if plan.tiling_optimization_level is not None:
        config.tiling_optimization_level = getattr(trt.TilingOptimizationLevel, plan.tiling_optimization_level)
        if plan.l2_limit_for_tiling is not None:
            config.l2_limit_for_tiling = plan.l2_limit_for_tiling
    if plan.avg_timing_iterations is not None:
        config.avg_timing_iterations = plan.avg_timing_iterations
    config.profiling_verbosity = getattr(trt.ProfilingVerbosity, plan.profiling_verbosity)
    _add_profile(builder, network, config, plan)

    cache = blob = None
    if plan.timing_cache:
        with locked(plan.timing_cache):
            blob = _read(plan.timing_cache)
        cache = config.create_timing_cache(blob)
        # set_timing_cache returns False when the cache's verification header does not match this
        # TensorRT/device (ignore_mismatch=False); a None cache is an unreadable (corrupt) file.
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            log(f"warning: TensorRT could not use the timing cache {plan.timing_cache}; starting an empty one")
            blob, cache = b"", config.create_timing_cache(b"")
            if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
                raise RuntimeError(
                    "TensorRT could not attach an empty timing cache: "
                    + ("; ".join(logger.errors[-5:]) or "no error logged")
                )
    entries_before = _entries(cache)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        raise RuntimeError(
            "TensorRT failed to build the engine: " + ("; ".join(logger.errors[-5:]) or "no error logged")
        )
    timing = {}
    if plan.timing_cache and cache is not None:
        cache = config.get_timing_cache() or cache  # the cache the builder updated (the attached one)
        timing = {
            "path": plan.timing_cache,
            "entries_before": entries_before,
            "entries_after": _entries(cache),
            "bytes_before": len(blob or b""),
            **save_timing_cache(config, cache, plan.timing_cache),
        }

    runtime = trt.Runtime(logger)
    if plan.version_compatible:  # a version-compatible plan embeds a lean runtime: host code we built ourselves
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise RuntimeError("TensorRT built an engine it cannot deserialize: " + "; ".join(logger.errors[-5:]))
    layers = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    return BuildResult(
        engine=bytes(memoryview(serialized)),
        layers=layers,
        io=io_tensors(trt, engine),
        seconds=seconds,
        timing_cache=timing,
        warnings=list(logger.warnings),
    )


def _add_profile(builder: Any, network: Any, config: Any, plan: BuildPlan) -> None:
    """The optimization profile over the dynamic inputs, `plan.profile_copies` times (one per context in
    concurrent use, each a profile object of its own); every dynamic input must have ranges."""
    ranges = plan.profile()
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    unknown = sorted(set(ranges) - set(names))
    if unknown:
        raise ValueError(f"profile names inputs {unknown} that the ONNX does not have (it has {names})")
    shapes = []  # (input, range) of every dynamic input
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        rng = ranges.get(tensor.name)
        if rng is None:
            if any(d < 0 for d in shape):
                raise ValueError(
                    f"input {tensor.name!r} has dynamic shape {list(shape)}: declare it in model.tensors "
                    "with dims, or give a profile override"
                )
            continue
        if len(rng.opt) != len(shape) or any(d >= 0 and d != r for d, r in zip(shape, rng.opt)):
            raise ValueError(
                f"input {tensor.name!r}: the ONNX shape {list(shape)} does not admit the profile's "
                f"opt shape {list(rng.opt)}"
            )
        if any(d < 0 for d in shape):  # a static input has nothing to set
            shapes.append((tensor.name, rng))
    for _ in range(plan.profile_copies if shapes else 0):
        profile = builder.create_optimization_profile()
        for name, rng in shapes:
            try:  # the binding raises RuntimeError when min/opt/max are inconsistent
                profile.set_shape(name, rng.min, rng.opt, rng.max)
            except RuntimeError as exc:
                raise ValueError(
                    f"TensorRT rejected the profile of input {name!r} (min {list(rng.min)}, "
                    f"opt {list(rng.opt)}, max {list(rng.max)}): {exc}"
                ) from None
        if config.add_optimization_profile(profile) < 0:
            raise ValueError(f"TensorRT rejected the optimization profile {plan.as_dict()['profiles']}")


def io_tensors(trt: Any, engine: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        entry: dict[str, Any] = {
            "name": name,
            "mode": "input" if is_input else "output",
            "dtype": engine.get_tensor_dtype(name).name,
            "shape": list(engine.get_tensor_shape(name)),
        }
        if is_input and any(d < 0 for d in entry["shape"]):
            entry["profile"] = [list(s) for s in engine.get_tensor_profile_shape(name, 0)]
        out.append(entry)
    return out


def parser_errors(errors: list[Any]) -> str:
    """One line per ONNX parser error: `ONNX parser: node 12 (Conv_3, Conv): <desc> [<code>]`."""
    lines = []
    for e in errors:
        code = getattr(e.code(), "name", str(e.code()))
        where = ""
        if e.node() >= 0:
            name, op = _call(e, "node_name"), _call(e, "node_operator")
            where = f" node {e.node()}" + (f" ({', '.join(x for x in (name, op) if x)})" if name or op else "")
        lines.append(f"ONNX parser:{where}: {e.desc()} [{code}]")
    return "\n".join(lines) or "ONNX parser failed without reporting an error"


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """An exclusive flock on `<path>.lock` (released when the holder exits or dies)."""
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def save_timing_cache(config: Any, cache: Any, path: str | Path) -> dict[str, Any]:
    """Merge `cache` into the file under the lock (other builds may have added entries meanwhile), atomically."""
    with locked(path):
        current = _read(path)
        merged = config.create_timing_cache(current) if current else None
        if merged is None or not merged.combine(cache, False):
            merged = cache  # no file yet, or one TensorRT refuses to combine with: ours replaces it
        data = bytes(memoryview(merged.serialize()))
        fd, tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=".timing-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return {"bytes_after": len(data), "entries_saved": _entries(merged)}


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return b""


def _entries(cache: Any) -> int | None:
    """Entries in a timing cache: len(ITimingCache.queryKeys()), which the binding documents as raising
    RuntimeError on error; None where the binding lacks it (older TensorRT) or it fails."""
    try:
        return len(cache.queryKeys()) if cache is not None else None
    except (AttributeError, RuntimeError, TypeError):
        return None


def _call(obj: Any, method: str) -> str:
    try:
        return str(getattr(obj, method)() or "")
    except (AttributeError, RuntimeError):
        return ""


def _collecting_logger(trt: Any, log: Callable[[str], None]) -> Any:
    """A trt.ILogger that prints warnings and errors and keeps them for the failure message and the summary."""

    class Collecting(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                log(f"TensorRT error: {msg}")
            elif level == int(trt.ILogger.Severity.WARNING):
                self.warnings.append(msg)
                log(f"TensorRT warning: {msg}")

    return Collecting()
