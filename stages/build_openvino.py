"""build.openvino: an ONNX file or IR -> a deployable OpenVINO IR directory, checked on the device.

The output directory holds `model.xml`, `model.bin` and `engine.json`, a typed
`engine_info.EngineInfo` (what a runner needs besides the IR: device,
precision and inference precision, the inputs and outputs with dtypes and
dims; the performance hint, weights mode and op counts under `details`).
Inputs are reshaped to the recipe's `dims`: as ranges (`Dimension(min, max)`)
for `shapes: dynamic`, or to the opt shape for `shapes: static`.

`inference_precision` has no default on purpose: OpenVINO's CPU plugin runs
bf16 by default on CPUs with AVX-512 BF16 or AMX, which moves outputs by 0.1
and more against FP32, so the recipe must say which numbers it wants. The
stage compiles the written IR with that precision and runs it at the opt shape
(and at min and max when dynamic), so an engine that cannot load fails here.
If the device silently substitutes another precision (this CPU runs an f16
request as bf16), the build fails rather than ship numbers nobody asked for.

Weights: `as_is` (default) writes float weights in the precision they arrive in
(FP32 from an FP32 ONNX, INT8 + FP32 from quantize.nncf); `fp16` compresses
float weights with `ov.save_model(compress_to_fp16=True)` (half the file, the
same inference precision); `fp32` is `as_is` that refuses FP16-compressed input.
The key holds the openvino version through `packages`, and the device and
precision through params; the CPU model is recorded in the run's summary for
people, neither in the key nor in engine.json: the IR bytes do not depend on it.

engine.json's `reproduce` is a `python -c` call of the OpenVINO API the stage
makes (read_model, reshape, save_model), not an `ovc` line: `ovc` cannot read
an IR (quantize.nncf's output) and converts ONNX through another path than
`read_model`, while the call reproduces the IR from either input. How to run
it as built (device, hint, inference precision, an opt shape) is the
`benchmark_app` line in `details`.

Sparse weights: `sparse_weights_decompression_rate` sets the CPU plugin's
CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE (ov::intel_cpu::sparse_weights_decompression_rate):
at compile time the plugin packs the weights of INT8 FullyConnected layers
(MatMuls with constant weights) whose share of zeros is at least the rate and
unpacks them inside the kernel, which saves memory bandwidth. OpenVINO
implements this for AMX CPUs only; elsewhere, and for float or Conv layers,
the setting is accepted and ignored, which the summary says (`sparse_weights`),
counting the executed layers whose primitive names a sparse kernel. The rate
goes into engine.json's `details`, so runners compile the IR with it and
validate measures the engine as it ships (benchmark_app takes it through
`-load_config` with `{"CPU": {"CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": "<rate>"}}`).
A 2:4-pruned weight (prune.sparsity) is half zeros: a rate <= 0.5 selects it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from pipeline.errors import one_line
from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext
from stages.runtimes import engine_info as info_file
from stages.runtimes.engine_info import EngineDevice, EngineInfo, Precision
from stages.runtimes.openvino.io import IR_XML, ir_xml, reshape_inputs, tensor_info

if TYPE_CHECKING:
    import openvino as ov

    from pipeline.schema import ModelSpec

ENGINE_JSON = info_file.FILENAME
SPARSE_RATE = "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"  # ov::intel_cpu::sparse_weights_decompression_rate
# inference precision hint -> EngineInfo.precision
_PRECISION: dict[str, Precision] = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}


class BuildOpenvinoParams(Params):
    inference_precision: Literal["f32", "bf16", "f16"] = Field(
        description="INFERENCE_PRECISION_HINT the engine runs with; required: OpenVINO's CPU default is bf16 "
        "where the CPU supports it, f32 elsewhere"
    )
    weights: Literal["as_is", "fp32", "fp16"] = Field(
        "as_is",
        description="as_is: keep the input's weight precision; fp16: compress float weights to FP16; "
        "fp32: like as_is, but fail if the input already has FP16-compressed weights",
    )
    shapes: Literal["dynamic", "static"] = Field(
        "dynamic", description="dynamic: named dims become ranges [min..max]; static: every dim fixed at opt"
    )
    device: str = Field("CPU", description="OpenVINO device the engine is checked on and meant for")
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = Field(
        "LATENCY", description="PERFORMANCE_HINT recorded in engine.json for runners (and used by the check)"
    )
    check: bool = Field(True, description="compile the IR on the device and run it at min, opt and max shapes")
    check_seed: int = Field(0, description="seed of the check's random inputs")
    sparse_weights_decompression_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE: INT8 FullyConnected weights with at least this share "
        "of zeros are packed and decompressed in the kernel (AMX CPUs only; 2:4 pruning gives 0.5); recorded "
        "in engine.json for runners; None: OpenVINO's default (off)",
    )

    @model_validator(mode="after")
    def _sparse_on_cpu(self) -> "BuildOpenvinoParams":
        if self.sparse_weights_decompression_rate is not None and self.device.split(".")[0] != "CPU":
            raise ValueError(f"sparse_weights_decompression_rate is a CPU plugin property; device is {self.device}")
        return self


class BuildOpenvino(Stage[BuildOpenvinoParams]):
    kind = "build.openvino"
    version = "1"
    summary = "Build a deployable OpenVINO IR (model.xml/.bin + engine.json) and check it compiles and runs"
    inputs = {"model": InputSpec(description="an .onnx file or an OpenVINO IR directory (model.xml + model.bin)")}
    outputs = {"model": OutputSpec("model", is_dir=True, description="model.xml, model.bin and engine.json")}
    packages = ("openvino",)
    extra = "openvino"
    deliverable = True
    model_fields = ("tensors", "dims")

    def unmet(self, params: BuildOpenvinoParams | None = None) -> str | None:
        """bf16 on a CPU without AVX512_BF16 or AMX cannot be built as asked: unavailable here (skipped with
        `--skip-unavailable`), not a failure after the build; the compile check stays the last word."""
        missing = super().unmet(params)
        if missing or params is None or params.inference_precision != "bf16" or params.device != "CPU":
            return missing
        from stages.runtimes.cpu import cpu_identity

        flags = cpu_identity()["cpu_flags"].split()
        if "avx512_bf16" in flags or "amx_bf16" in flags:
            return None
        return "inference_precision bf16 needs a CPU with AVX512_BF16 or AMX (this one has none); choose f32"

    def run(self, ctx: StageContext[BuildOpenvinoParams]) -> dict[str, Any]:
        import openvino as ov

        from stages.runtimes.openvino import io as ovio

        p = ctx.params
        core = ov.Core()
        if not any(d == p.device or d.startswith(p.device + ".") for d in core.available_devices):
            raise ValueError(f"device {p.device!r} is not available here (has: {', '.join(core.available_devices)})")
        model = ovio.model_from_artifact(core, ctx.path("model"))
        fp16_in = ovio.compressed_fp16_constants(model)
        if p.weights == "fp32" and fp16_in:
            raise ValueError(
                f"weights: fp32, but the input holds {fp16_in} FP16-compressed weight constants; "
                "FP32 cannot be restored (use weights: as_is, or build from the FP32 ONNX)"
            )
        _reshape(model, ctx.model, p.shapes)
        outdir = ctx.output("model")
        xml = ovio.save_ir(model, outdir, compress_to_fp16=p.weights == "fp16")
        saved = core.read_model(str(xml))  # everything below looks at the bytes that ship
        fp16_out = ovio.compressed_fp16_constants(saved)
        if p.weights == "fp16" and not fp16_out:
            print(
                "note: weights: fp16 compressed nothing (an INT8 IR's weights are already 8-bit and OpenVINO keeps "
                "their scales in FP32)",
                flush=True,
            )
        summary: dict[str, Any] = {
            "weights": p.weights,
            "inference_precision": p.inference_precision,
            "size_mb": round((outdir / ovio.IR_BIN).stat().st_size / 1e6, 3),
            "int8_ops": ovio.count_ops(saved),
            "fp16_weight_constants": fp16_out,
        }
        check: dict[str, Any] = {}
        if p.check:
            started = time.perf_counter()
            compiled = core.compile_model(saved, p.device, compile_config(p))
            effective = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            if effective != p.inference_precision:
                raise ValueError(
                    f"{p.device} compiled the engine with inference precision {effective}, not the "
                    f"requested {p.inference_precision} (this device lacks it); choose "
                    + " or ".join(sorted({"f32", effective}))
                )
            summary["compile_s"] = round(time.perf_counter() - started, 3)
            check = _run_points(compiled, saved, ctx.model, p.shapes, p.check_seed)
            summary["checked"] = {point: shapes for point, shapes in check.items()}
            if p.sparse_weights_decompression_rate is not None:
                summary["sparse_weights"] = sparse_note(compiled, saved, p.sparse_weights_decompression_rate)
        info = engine_info(
            saved,
            p,
            ctx.path("model"),
            ctx.model,
            ov.get_version(),
            fake_quantize=ovio.count_ops(saved, ("FakeQuantize",)),
            fake_convert=ovio.count_ops(saved, ("FakeConvert",)),
            fp16_weight_constants=fp16_out,
        )
        if p.sparse_weights_decompression_rate is not None and not p.check:
            summary["sparse_weights"] = sparse_note(None, saved, p.sparse_weights_decompression_rate)
        summary["precision"] = info.precision
        # Where it was built goes in the run record, not the artifact: the IR bytes (and so early
        # cutoff on a shared cache) must not depend on the machine.
        summary["built_on"] = core.get_property(p.device, "FULL_DEVICE_NAME")
        info_file.write(info, outdir / ENGINE_JSON)
        return summary


def compile_config(p: BuildOpenvinoParams) -> dict[str, Any]:
    """The properties the check compiles with, and runners after it (from engine.json)."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": p.inference_precision, "PERFORMANCE_HINT": p.performance_hint}
    if p.sparse_weights_decompression_rate is not None:
        config[SPARSE_RATE] = p.sparse_weights_decompression_rate
    return config


def sparse_note(compiled: "ov.CompiledModel | None", model: "ov.Model", rate: float) -> str:
    """One line for the summary: whether the CPU can use sparse-weight decompression for this IR, and whether the
    compiled model runs any layer with a sparse kernel (a primitive whose name says so)."""
    from stages.runtimes.cpu import cpu_identity

    amx = "amx_int8" in cpu_identity()["cpu_flags"].split()
    int8 = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    sparse = None
    if compiled is not None:
        infos = [op.get_rt_info() for op in compiled.get_runtime_model().get_ops()]
        sparse = sum("sparse" in rt["primitiveType"].astype(str).lower() for rt in infos if "primitiveType" in rt)
    why = []
    if not amx:
        why.append("this CPU has no AMX (OpenVINO decompresses sparse weights with AMX int8 kernels only)")
    if not int8:
        why.append("the IR is not INT8 (it applies to INT8 FullyConnected layers)")
    ran = "" if sparse is None else f"; {sparse} layers run a sparse kernel"
    if why:
        return f"rate {rate:g} recorded but ignored here: " + "; ".join(why) + ran
    return f"rate {rate:g}: INT8 FullyConnected weights with >= {rate:.0%} zeros are packed{ran}"


def engine_info(
    model: "ov.Model",
    p: BuildOpenvinoParams,
    source: Path,
    spec: "ModelSpec | None",
    version: str,
    fake_quantize: int,
    fake_convert: int,
    fp16_weight_constants: int,
) -> EngineInfo:
    """The EngineInfo of the saved IR `model`, built from `source` with params `p` (machine-independent)."""
    rate = p.sparse_weights_decompression_rate
    precision: Precision = "int8" if fake_quantize else "fp8" if fake_convert else _PRECISION[p.inference_precision]
    inputs = tuple(tensor_info(port) for port in model.inputs)
    source_file = f"{source.name}/{ir_xml(source).name}" if source.is_dir() else source.name
    reshape = {t.name: _shape_text(t.dims) for t in inputs} if spec is not None and spec.tensors else None
    run_with = [
        "benchmark_app",
        "-m",
        IR_XML,
        "-d",
        p.device,
        "-hint",
        p.performance_hint.lower(),
        "-infer_precision",
        p.inference_precision,
    ]
    if spec is not None and spec.tensors and any(t.dynamic for t in inputs):
        run_with += ["-data_shape", ",".join(f"{n}[{','.join(map(str, spec.shape(n, 'opt')))}]" for n in spec.tensors)]
    if rate is not None:  # the file `-load_config` reads is `benchmark_app_config` below
        run_with += ["-load_config", "benchmark_app_config.json"]
    return EngineInfo(
        backend="openvino",
        precision=precision,
        inference_precision=p.inference_precision,
        inputs=inputs,
        outputs=tuple(tensor_info(port) for port in model.outputs),
        toolchain={"openvino": version},
        device=EngineDevice(device=p.device),
        reproduce=_reproduce(source_file, reshape, p.weights == "fp16"),
        details={
            "performance_hint": p.performance_hint,
            "weights": p.weights,
            "shapes": p.shapes,
            "int8_ops": fake_quantize + fake_convert,
            "fake_quantize": fake_quantize,
            "fake_convert": fake_convert,
            "fp16_weight_constants": fp16_weight_constants,
            "benchmark_app": run_with,
            **(
                {
                    "sparse_weights_decompression_rate": rate,
                    "benchmark_app_config": {p.device: {SPARSE_RATE: str(rate)}},
                }
                if rate is not None
                else {}
            ),
        },
    )


def _reproduce(source: str, reshape: dict[str, str] | None, compress_to_fp16: bool) -> tuple[str, ...]:
    """`python -c` with the OpenVINO calls this stage makes: read the input, reshape it, save the IR."""
    steps = ["import openvino as ov", f"model = ov.Core().read_model({source!r})"]
    if reshape:
        steps.append(f"model.reshape({reshape!r})")
    steps.append(f"ov.save_model(model, {IR_XML!r}, compress_to_fp16={compress_to_fp16})")
    return ("python", "-c", "; ".join(steps))


def _shape_text(dims: Any) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _reshape(model: "ov.Model", spec: "ModelSpec | None", mode: str) -> None:
    """Set every input to the recipe's dims: ranges (dynamic) or the opt point (static)."""
    import openvino as ov

    names = [i.get_any_name() for i in model.inputs]
    if spec is None or not spec.tensors:
        if mode == "static" and any(i.get_partial_shape().is_dynamic for i in model.inputs):
            raise ValueError("shapes: static needs model.tensors and dims in the recipe (the opt shapes)")
        return
    missing, extra = sorted(set(spec.tensors) - set(names)), sorted(set(names) - set(spec.tensors))
    if missing or extra:
        raise ValueError(
            f"the model's inputs {names} do not match model.tensors {list(spec.tensors)}"
            + (f" (not in the model: {missing})" if missing else "")
            + (f" (not in the recipe: {extra})" if extra else "")
        )
    shapes = {}
    for name, tensor in spec.tensors.items():
        dims = []
        for d in tensor.shape:
            if isinstance(d, int):
                dims.append(ov.Dimension(d))
            elif mode == "static" or spec.dims[d].min == spec.dims[d].max:
                dims.append(ov.Dimension(spec.dims[d].opt if mode == "static" else spec.dims[d].min))
            else:
                dims.append(ov.Dimension(spec.dims[d].min, spec.dims[d].max))
        shapes[name] = ov.PartialShape(dims)
    reshape_inputs(model, shapes)


def _run_points(
    compiled: "ov.CompiledModel", model: "ov.Model", spec: "ModelSpec | None", mode: str, seed: int
) -> dict[str, dict[str, list[int]]]:
    """Run one inference at each shape point the engine must accept; returns {point: {output: shape}}."""
    import numpy as np

    from stages.runtimes.dtypes import random_array

    points = ("opt",) if mode == "static" else ("min", "opt", "max")
    if spec is None or not spec.tensors:
        if any(i.get_partial_shape().is_dynamic for i in model.inputs):
            raise ValueError("the model has dynamic inputs and the recipe declares no model.tensors to check them at")
        feeds_at = {"opt": {i.get_any_name(): tuple(i.get_shape()) for i in model.inputs}}
    else:
        feeds_at = {pt: {n: spec.shape(n, pt) for n in spec.tensors} for pt in points}  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    dtypes = {i.get_any_name(): i.get_element_type().to_dtype() for i in model.inputs}
    request = compiled.create_infer_request()
    results: dict[str, dict[str, list[int]]] = {}
    seen: set[tuple] = set()
    for point, shapes in feeds_at.items():
        key = tuple(sorted(shapes.items()))
        if key in seen:
            continue
        seen.add(key)
        feeds = {n: random_array(rng, s, dtypes[n]) for n, s in shapes.items()}
        try:
            out = request.infer(feeds)
        except RuntimeError as exc:
            raise ValueError(
                f"the engine failed to run at the {point} shape "
                f"{', '.join(f'{n} {list(s)}' for n, s in shapes.items())}: "
                f"{one_line(str(exc), 300)}"
            ) from None
        results[point] = {o.get_any_name(): list(v.shape) for o, v in zip(compiled.outputs, out.values())}
    return results
