"""build.tensorrt: an ONNX file -> a directory holding a TensorRT engine for this GPU and its engine.json.

Precision comes from the ONNX, never from builder flags: TensorRT 11 removed
them (FP16/INT8/BF16/FP8 flags, the INT8 calibrator) and builds every network
strongly typed, so INT8 means Q/DQ nodes (quantize.qdq) and FP16 means an ONNX
already in mixed precision (onnx.fp16). TensorRT 10 gets the STRONGLY_TYPED
network flag so the same recipe gives the same kind of engine on both.

An engine is compiled for one GPU model by one TensorRT version, so the key
holds both (toolchain: TensorRT version, GPU name, compute capability, CUDA
version): an engine built on an A100 is never served to an L4. The stage holds
the machine alone while it builds (`exclusive`), since TensorRT times kernels
to choose them. Its timing cache is a side cache outside every key
(`ctx.side_cache/tensorrt-timing/<trt>-<gpu>-sm<cc>-cuda<v>.cache`),
shared across builds under a file lock: it makes rebuilds fast, not different.

Decisions live in `runtimes.tensorrt.plan` (pure data, testable without a GPU); `runtimes.tensorrt.build`
applies them to the API; `engine_info` (pure data too) turns the plan, the
probe and what the build returned into the typed sidecar (`runtimes.engine_info`):
the engine's I/O with dtypes, dims and profile shapes, the precision its layers
compute in, TensorRT/CUDA/driver versions, the GPU and its compute capability,
and the equivalent `trtexec` argv as `reproduce`; the plan's settings, the
profiles, the inspector's layer information and the check under `details`.
With `check` on, the engine is run at each profile point and compared with ONNX
Runtime on the input ONNX (figures reported; `check_max_abs` gates).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext
from stages.runtimes import engine_info as info_file
from stages.runtimes.engine_info import EngineDevice, EngineInfo, TensorInfo
from stages.runtimes.tensorrt.targets import Target as GpuTarget

ENGINE_FILE = "model.engine"

if TYPE_CHECKING:
    from stages.runtimes.tensorrt.plan import BuildPlan
    from stages.runtimes.tensorrt.probe import GpuProbe


class ProfileOverride(BaseModel):
    """One input's optimization-profile shapes, replacing the ones derived from the recipe's dims."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: list[int]
    opt: list[int]
    max: list[int]


class BuildTensorrtParams(Params):
    target: GpuTarget | None = Field(
        None,
        description='the GPU, TensorRT and CUDA the engine is for, e.g. {gpu: H100, tensorrt: "11.4", '
        'cuda: "12.9"}: the key holds it (a machine without a GPU computes it and can be served the engine), '
        "and a node that does not match refuses to build; None: this machine's GPU",
    )
    memory_pool_mb: int | None = Field(
        None,
        ge=1,
        description="workspace memory pool limit in MiB "
        "(MemoryPoolType.WORKSPACE; None: TensorRT's default, the device's memory)",
    )
    builder_optimization_level: int = Field(
        3, ge=0, le=5, description="0-5: higher searches longer for faster kernels (TensorRT's default 3)"
    )
    shapes: Literal["dynamic", "static"] = Field(
        "dynamic",
        description="dynamic: one profile spanning each named dim's min..max (tuned at opt); "
        "static: every named dim fixed at opt",
    )
    profile: dict[str, ProfileOverride] = Field(
        default_factory=dict, description="input -> {min, opt, max} shapes overriding those derived from dims"
    )
    profiles: int = Field(
        1,
        ge=1,
        le=16,
        description="copies of the optimization profile: a dynamic-shape engine runs at most this many execution "
        "contexts at once (one profile per context in concurrent use), so multi-stream throughput needs them",
    )
    version_compatible: bool = Field(
        False,
        description="runs on later TensorRT versions (BuilderFlag."
        "VERSION_COMPATIBLE; embeds a lean runtime, can be slower)",
    )
    exclude_lean_runtime: bool = Field(False, description="with version_compatible: do not embed the lean runtime")
    hardware_compatibility: Literal["none", "ampere+"] = Field(
        "none",
        description="ampere+: the engine runs on any Ampere-or-newer GPU (HardwareCompatibilityLevel."
        "AMPERE_PLUS), at some speed cost; the key still names the build GPU",
    )
    timing_cache: bool = Field(
        True,
        description="load and update the shared timing cache (a side cache outside the key: it speeds up rebuilds)",
    )
    max_aux_streams: int | None = Field(
        None, ge=0, description="auxiliary streams per inference (0: least memory; None: TensorRT's heuristic)"
    )
    tiling_optimization_level: Literal["none", "fast", "moderate", "full"] = Field(
        "none", description="cross-kernel tiling search effort (TensorRT >= 10.8)"
    )
    l2_limit_for_tiling_mb: int | None = Field(
        None, ge=0, description="L2 cache the engine may assume it owns, for tiling (MiB)"
    )
    avg_timing_iterations: int | None = Field(None, ge=1, description="timing runs averaged per tactic")
    sparse_weights: bool = Field(
        False, description="allow 2:4 structured-sparsity kernels (BuilderFlag.SPARSE_WEIGHTS)"
    )
    tf32: bool = Field(
        True, description="allow TF32 math for FP32 layers (TensorRT's default; false for bit-closer FP32)"
    )
    profiling_verbosity: Literal["detailed", "layer_names_only", "none"] = Field(
        "detailed",
        description="layer detail kept in the engine; detailed lets engine.json and runners see each layer's precision",
    )
    strongly_typed: Literal[True] = Field(
        True, description="fixed: TensorRT 11 builds only strongly typed networks (precision from the ONNX)"
    )
    check: bool = Field(True, description="run the engine at each profile point and compare with ONNX Runtime")
    check_seed: int = Field(0, description="seed of the check's random inputs")
    check_max_abs: float | None = Field(
        None,
        gt=0,
        description="fail when the engine's max abs difference from ONNX Runtime exceeds this (None: report only)",
    )

    @model_validator(mode="after")
    def _lean_needs_vc(self) -> "BuildTensorrtParams":
        if self.exclude_lean_runtime and not self.version_compatible:
            raise ValueError("exclude_lean_runtime needs version_compatible: true")
        return self


class BuildTensorrt(Stage[BuildTensorrtParams]):
    kind = "build.tensorrt"
    version = "1"
    summary = "Build a TensorRT engine (strongly typed) for this GPU from an ONNX file: model.engine + engine.json"
    inputs = {"model": InputSpec(description="the .onnx file (FP32, FP16 mixed precision, or Q/DQ INT8)")}
    # One directory, as build.openvino's: the engine travels with its EngineInfo (stages/runtimes/engine_info.py),
    # so validate, runners and packaging stages downstream read what it is instead of guessing.
    outputs = {
        "model": OutputSpec(
            "engine",
            is_dir=True,
            description=f"`{ENGINE_FILE}` (the serialized engine, only for "
            "this GPU model and TensorRT) and `engine.json` (TensorRT and GPU identity, precision, "
            "I/O with profiles, the equivalent trtexec argv; settings and layers under details)",
        ),
    }
    packages = ("tensorrt",)
    extra = "tensorrt"
    model_fields = ("tensors", "dims")
    exclusive = True
    deliverable = True

    def unmet(self, params: BuildTensorrtParams | None = None) -> str | None:
        """A GPU, TensorRT and cuda-python here (whether this GPU is the declared target, the engine asks
        the target)."""
        from stages.runtimes.tensorrt.probe import cuda_python_available, probe_gpu, unmet_reason

        return unmet_reason(probe_gpu(), cuda_python_available())

    def target(self, params: BuildTensorrtParams) -> GpuTarget | None:
        return params.target

    def toolchain(self, params: BuildTensorrtParams | None = None) -> dict[str, str]:
        return {}  # TensorRT lives with the GPU: its version is the hardware part (`hardware`, or the target's)

    def hardware(self, params: BuildTensorrtParams) -> dict[str, str]:
        """This host's GPU, TensorRT and CUDA (keyed when the params declare no target)."""
        from stages.runtimes.tensorrt.probe import probe_gpu

        return probe_gpu().identity()

    def run(self, ctx: StageContext[BuildTensorrtParams]) -> dict[str, Any]:
        from stages.runtimes.tensorrt import build as trt_build
        from stages.runtimes.tensorrt import plan as trt_plan
        from stages.runtimes.tensorrt.probe import probe_gpu

        p = ctx.params
        probe = probe_gpu()
        if p.target is not None:  # never an engine for one GPU built on another
            mismatch = p.target.mismatch(probe, doing="build for")
            if mismatch is not None:
                raise RuntimeError(mismatch)
        source = ctx.path("model")
        plan = trt_plan.build_plan(p, ctx.model, probe, source, trt_plan.side_cache_root(ctx.side_cache))
        print(f"equivalent trtexec: {plan.trtexec_line}", flush=True)
        for warning in plan.warnings:  # sparse_weights on an ONNX with no 2:4 weight
            ctx.warn(warning)
        result = trt_build.engine_from_plan(plan)
        outdir = ctx.output("model")
        outdir.mkdir(parents=True, exist_ok=True)
        engine_path = outdir / ENGINE_FILE
        engine_path.write_bytes(result.engine)
        check = _check(engine_path, source, plan, p.check_seed, p.check_max_abs) if p.check else None
        info = engine_info(plan, probe, result.io, result.layers, source.name, check, p.target)
        info_file.write(info, outdir)
        summary: dict[str, Any] = {
            "precision": info.precision,
            "gpu": probe.gpu,
            "tensorrt": probe.tensorrt,
            "build_s": round(result.seconds, 2),
            "size_mb": round(len(result.engine) / 1e6, 3),
            "timing_cache": result.timing_cache,
            "trtexec": plan.trtexec_line,
        }
        if result.warnings:
            summary["tensorrt_warnings"] = len(result.warnings)
        if plan.sparse_2_4 is not None:
            summary["sparse_2_4_weights"] = "{} of {}".format(*plan.sparse_2_4)
        if check is not None:
            summary["check"] = check
        return summary


def engine_info(
    plan: "BuildPlan",
    probe: "GpuProbe",
    io: list[dict[str, Any]],
    layers: Any,
    onnx_name: str,
    check: dict[str, Any] | None = None,
    target: GpuTarget | None = None,
) -> EngineInfo:
    """The EngineInfo of an engine built by `plan` on the probed host, from the build's I/O list (`trt_build.
    io_tensors`: name, mode, TensorRT dtype, shape with -1 for dynamic dims, [min, opt, max] profile of a dynamic
    input) and the inspector's layer JSON. Pure data: no tensorrt, no GPU."""
    from stages.runtimes.tensorrt import layers as trt_layers

    plan_data = plan.as_dict()
    details: dict[str, Any] = {
        "strongly_typed": plan.strongly_typed,
        "settings": {k: v for k, v in plan_data.items() if k not in ("onnx_path", "timing_cache", "profiles")},
        "profiles": plan_data["profiles"],
        "layers": layers,
    }
    if check is not None:
        details["check"] = check
    toolchain = {
        k: v
        for k, v in (
            ("tensorrt", probe.tensorrt),
            ("tensorrt_cuda", probe.tensorrt_cuda),
            ("cuda", probe.cuda),
            ("driver", probe.driver),
        )
        if v
    }
    return EngineInfo(
        backend="tensorrt",
        precision=trt_layers.precision_from_layers(layers),
        inputs=tuple(_tensor(t) for t in io if t["mode"] == "input"),
        outputs=tuple(_tensor(t) for t in io if t["mode"] != "input"),
        toolchain=toolchain,
        device=EngineDevice(
            device=probe.gpu or "unknown",
            compute_capability=probe.compute_capability,
            accelerator=target.gpu if target is not None else None,
        ),
        reproduce=tuple(plan.trtexec_args(onnx=onnx_name, layer_info="layers.json")),
        details=details,
    )


def _tensor(entry: dict[str, Any]) -> TensorInfo:
    """One `trt_build.io_tensors` entry as a TensorInfo: a -1 dim becomes the profile's "min..max" ("?" for an
    output, whose range TensorRT does not state), the dtype by the one table's name (`runtimes.dtypes`)."""
    from stages.runtimes.dtypes import name_of_trt

    name = name_of_trt(entry["dtype"])
    if name is None:
        raise ValueError(
            f"I/O tensor {entry['name']!r} has TensorRT type {entry['dtype']}, which engine.json cannot name"
        )
    profile = entry.get("profile")
    dims = tuple(
        d if d >= 0 else (f"{profile[0][i]}..{profile[2][i]}" if profile else "?") for i, d in enumerate(entry["shape"])
    )
    lo, opt, hi = (tuple(s) for s in profile) if profile else (None, None, None)
    return TensorInfo(name=entry["name"], dtype=name, dims=dims, min=lo, opt=opt, max=hi)


def _check(engine: Path, onnx_path: Path, plan: Any, seed: int, max_abs: float | None) -> dict[str, Any]:
    """Run the engine and ONNX Runtime at each distinct profile point; figures per point and output."""
    from stages.runtimes.onnx import check as onnx_check
    from stages.runtimes.onnx import io as onnxio
    from stages.runtimes.tensorrt.runner import TensorRTRunner

    runner = TensorRTRunner(engine)
    session = onnxio.session_from_onnx(onnx_path)
    ranges = plan.profile()
    static = {i.name: tuple(i.shape) for i in session.get_inputs() if i.name not in ranges}
    if any(not all(isinstance(d, int) for d in s) for s in static.values()):
        raise ValueError(f"cannot check: inputs {sorted(static)} have dynamic dims and no profile")
    results: dict[str, Any] = {}
    seen: set[tuple] = set()
    try:
        for point in ("min", "opt", "max"):
            shapes = {**static, **{n: getattr(r, point) for n, r in ranges.items()}}
            key = tuple(sorted(shapes.items()))
            if key in seen:
                continue
            seen.add(key)
            feeds = onnxio.random_inputs(session, shapes, seed)
            reference = onnxio.run_onnx(session, feeds)
            try:
                per_output = onnx_check.compare_outputs(reference, runner.infer(feeds), max_abs)
            except ValueError as exc:
                raise ValueError(f"engine check at the {point} shape {dict(shapes)}: {exc}") from None
            results[point] = {
                "shapes": {n: list(s) for n, s in shapes.items()},
                "outputs": per_output,
                **onnx_check.worst(per_output),
            }
    finally:
        runner.close()
    return results
