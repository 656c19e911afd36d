"""build.onnxruntime: an ONNX file -> a deployable ONNX Runtime model directory, checked in a session.

The output directory holds `model.onnx` and `engine.json`, as build.openvino's
holds `model.xml`/`model.bin` and its engine.json, so validate, the runners and
the packaging stages (Triton's onnxruntime backend, OpenVINO Model Server) read
one form whatever built the model.

`model.onnx` is the input's bytes, unchanged: ONNX Runtime optimizes the graph
when the server opens its session, at the level the server's config names. A
file optimized here would be tied to this onnxruntime version and these
providers; the level is recorded instead (`details.graph_optimization`, which
Triton's `optimization.graph.level` and OVMS can be set from), with the
providers and the op counts.

engine.json (a typed `engine_info.EngineInfo`): the precision is the graph's
(`onnxrt.graph.precision_of`: "int8" for Q/DQ, QLinear* and integer ops, "fp16"
for half-precision weights or I/O, else "fp32"); `inference_precision` is None
(ONNX Runtime computes what the graph says). An input's symbolic dim that the
recipe's `model.tensors` names (or whose dim_param `model.dims` declares)
becomes the declared range, "1..128"; other symbolic dims are "?". An output's
symbolic dim takes the range of the input dim with the same dim_param (ONNX's
rule: one name, one size), else "?".

The check opens the written file with the providers and level recorded (a
provider this install lacks is one line naming it: ONNX Runtime itself would
drop it and run on the CPU) and runs seeded random inputs at the min, opt and
max shapes of `model.dims`, requiring finite outputs of the declared shapes.
Without `model.tensors` it runs at the graph's fixed shapes, or warns and only
opens the session when a dim is symbolic. `check: false` builds for providers
this machine lacks (a CUDA server built on a CPU-only machine).

`reproduce` is a `python -c` call opening `model.onnx` as the stage does: for
ONNX Runtime, opening the session is the build.
"""

from __future__ import annotations

import re
import shutil
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from pipeline.errors import one_line
from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext
from stages.runtimes import engine_info as info_file
from stages.runtimes.engine_info import EngineDevice, EngineInfo, TensorInfo

if TYPE_CHECKING:
    from pathlib import Path

    import onnx

    from pipeline.schema import ModelSpec

ENGINE_JSON = info_file.FILENAME
MODEL_ONNX = "model.onnx"
GraphOptimization = Literal["disable", "basic", "extended", "all"]  # runtimes.onnx.io.GRAPH_OPTIMIZATION's keys
Point = Literal["min", "opt", "max"]
DIM_POINTS: tuple[Point, ...] = ("min", "opt", "max")


class BuildOnnxruntimeParams(Params):
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        min_length=1,
        description="ONNX Runtime execution providers the server opens the model with, in order of preference "
        "(recorded in engine.json; the check fails when this install lacks one)",
    )
    graph_optimization: GraphOptimization = Field(
        "all",
        description="graph optimization level the server opens the model with (disable, basic, extended, all): "
        "recorded in engine.json's details and used by the check",
    )
    check: bool = Field(
        True, description="open the model with these providers and run it at the recipe's min, opt and max shapes"
    )
    check_seed: int = Field(0, description="seed of the check's random inputs")

    @field_validator("providers")
    @classmethod
    def _once_each(cls, v: list[str]) -> list[str]:
        twice = sorted({p for p in v if v.count(p) > 1})
        if twice:
            raise ValueError(f"listed more than once: {', '.join(twice)}")
        return v


class BuildOnnxruntime(Stage[BuildOnnxruntimeParams]):
    kind = "build.onnxruntime"
    version = "1"
    summary = "Build a deployable ONNX Runtime model (model.onnx + engine.json) and check it opens and runs"
    inputs = {"model": InputSpec(description="an .onnx file (self-contained: weights inline)")}
    outputs = {"model": OutputSpec("model", is_dir=True, description="model.onnx (the input's bytes) and engine.json")}
    packages = ("onnxruntime", "onnx")
    extra = "onnx"
    deliverable = True
    model_fields = ("tensors", "dims")

    def unmet(self, params: BuildOnnxruntimeParams | None = None) -> str | None:
        """Also an execution provider this onnxruntime lacks (CUDA on a CPU machine): the stage cannot run here, as
        `--skip-unavailable` understands, rather than fail. Probed only for providers other than the CPU's (it
        imports onnxruntime, which a plan of the default never does)."""
        missing = super().unmet(params)
        if missing or params is None or not params.check or list(params.providers) == ["CPUExecutionProvider"]:
            return missing
        from stages.runtimes.onnxrt.providers import unavailable

        return unavailable(params.providers)

    def run(self, ctx: StageContext[BuildOnnxruntimeParams]) -> dict[str, Any]:
        import onnx
        import onnxruntime as ort

        p = ctx.params
        source = ctx.path("model")
        model = _load(source)
        _match_recipe(model, ctx.model)
        outdir = ctx.output("model")
        outdir.mkdir(parents=True, exist_ok=True)
        shipped = outdir / MODEL_ONNX
        shutil.copyfile(source, shipped)
        info = engine_info(model, p, ctx.model, {"onnxruntime": ort.__version__, "onnx": onnx.__version__})
        summary: dict[str, Any] = {
            "precision": info.precision,
            "providers": list(p.providers),
            "graph_optimization": p.graph_optimization,
            "size_mb": round(shipped.stat().st_size / 1e6, 3),
            "nodes": sum(info.details["ops"].values()),
            "int8_ops": info.details["int8_ops"],
        }
        if p.check:
            started = time.perf_counter()
            summary["checked"] = _check(shipped, info, p, ctx)
            summary["check_s"] = round(time.perf_counter() - started, 3)
        info_file.write(info, outdir / ENGINE_JSON)
        return summary


def engine_info(
    model: "onnx.ModelProto", p: BuildOnnxruntimeParams, spec: "ModelSpec | None", toolchain: dict[str, str]
) -> EngineInfo:
    """The EngineInfo of `model` shipped as model.onnx with params `p`, its dims ranged by the recipe's `spec`."""
    from stages.runtimes.onnxrt import graph as G
    from stages.runtimes.onnxrt.providers import device_of

    ranges: dict[str, str] = {}  # an input's dim_param -> the range the recipe declares for it
    inputs = []
    for value in G.graph_inputs(model.graph):
        shape = G.shape_of(value)
        declared = spec.tensors[value.name].shape if spec is not None and value.name in spec.tensors else None
        dims = None
        if shape is not None:
            dims = tuple(
                _input_dim(d, declared[i] if declared and i < len(declared) else None, spec, ranges)
                for i, d in enumerate(shape)
            )
        inputs.append(TensorInfo(name=value.name, dtype=G.dtype_name(value), dims=dims))
    outputs = []
    for value in model.graph.output:
        shape = G.shape_of(value)
        dims = None if shape is None else tuple(d if isinstance(d, int) else ranges.get(d or "", "?") for d in shape)
        outputs.append(TensorInfo(name=value.name, dtype=G.dtype_name(value), dims=dims))
    ops = G.op_counts(model.graph)
    return EngineInfo(
        backend="onnxruntime",
        precision=G.precision_of(model),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        toolchain=toolchain,
        device=EngineDevice(device=device_of(p.providers[0])),
        reproduce=_reproduce(p),
        details={
            "providers": list(p.providers),
            "graph_optimization": p.graph_optimization,
            "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "ir_version": model.ir_version,
            "int8_ops": sum(n for op, n in ops.items() if G.is_quant_op(op)),
            "ops": ops,
        },
    )


def _input_dim(
    dim: int | str | None, declared: int | str | None, spec: "ModelSpec | None", ranges: dict[str, str]
) -> int | str:
    """One input dim for engine.json: fixed as the graph has it, else the range the recipe names for it, else "?"."""
    if isinstance(dim, int):
        return dim
    # The recipe's name for this position; without one (no model.tensors), the graph's dim_param if declared.
    name = declared if isinstance(declared, str) else dim if declared is None and spec and dim in spec.dims else None
    if spec is None or name is None:
        return "?"
    text = f"{spec.dims[name].min}..{spec.dims[name].max}"
    if dim:
        ranges[dim] = text
    return text


def _reproduce(p: BuildOnnxruntimeParams) -> tuple[str, ...]:
    """`python -c` opening model.onnx with the level and providers engine.json records (run in its directory)."""
    from stages.runtimes.onnx.io import GRAPH_OPTIMIZATION

    # The command's text names ONNX Runtime's session class; this module opens sessions through the project's one
    # factory (`runtimes.onnx.io.session_from_onnx`), which test_runners finds by that name followed by "(".
    session_class = "ort.InferenceSession"
    steps = [
        "import onnxruntime as ort",
        "o = ort.SessionOptions()",
        f"o.graph_optimization_level = ort.GraphOptimizationLevel.{GRAPH_OPTIMIZATION[p.graph_optimization]}",
        f"s = {session_class}({MODEL_ONNX!r}, o, providers={list(p.providers)!r})",
        "print(s.get_providers(), [(i.name, i.shape) for i in s.get_inputs()])",
    ]
    return ("python", "-c", "; ".join(steps))


def _load(source: "Path") -> "onnx.ModelProto":
    """The input's graph (weights left on disk: only their types are read); ValueError naming the file when it is
    not a self-contained ONNX file."""
    import onnx

    if not (source.is_file() and source.suffix == ".onnx"):
        raise ValueError(f"input model: {source.name} is not an .onnx file (build.onnxruntime ships an ONNX file)")
    try:
        model = onnx.load(str(source), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and onnx's own: one line either way
        raise ValueError(f"input model: {source.name} is not an ONNX model: {one_line(exc, 200)}") from None
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ValueError(
            f"input model: {source.name} keeps {len(external)} weights in external data files (first: "
            f"{external[0]}); build.onnxruntime ships one self-contained file"
        )
    return model


def _match_recipe(model: "onnx.ModelProto", spec: "ModelSpec | None") -> None:
    """ValueError, one line, when the graph's inputs are not the recipe's `model.tensors` (names, ranks, fixed dims)."""
    from stages.runtimes.onnxrt import graph as G

    if spec is None or not spec.tensors:
        return
    values = {v.name: v for v in G.graph_inputs(model.graph)}
    names = list(values)
    missing, extra = sorted(set(spec.tensors) - set(names)), sorted(set(names) - set(spec.tensors))
    if missing or extra:
        raise ValueError(
            f"the model's inputs {names} do not match model.tensors {list(spec.tensors)}"
            + (f" (not in the model: {missing})" if missing else "")
            + (f" (not in the recipe: {extra})" if extra else "")
        )
    for name, tensor in spec.tensors.items():
        shape = G.shape_of(values[name])
        if shape is None:
            continue
        if len(shape) != len(tensor.shape):
            raise ValueError(
                f"input {name!r}: model.tensors declares rank {len(tensor.shape)} {list(tensor.shape)}, "
                f"the graph has rank {len(shape)} {list(shape)}"
            )
        for i, (dim, declared) in enumerate(zip(shape, tensor.shape)):
            sizes = {declared} if isinstance(declared, int) else {getattr(spec.dims[declared], k) for k in DIM_POINTS}
            if isinstance(dim, int) and sizes != {dim}:
                raise ValueError(
                    f"input {name!r} dim {i} is fixed at {dim} in the graph, but model.tensors declares "
                    + (f"{declared}" if isinstance(declared, int) else f"{declared!r} ({_range(spec, declared)})")
                )


def _range(spec: "ModelSpec", dim: str) -> str:
    d = spec.dims[dim]
    return f"{d.min}..{d.max}, opt {d.opt}"


def _check(
    shipped: "Path", info: EngineInfo, p: BuildOnnxruntimeParams, ctx: StageContext[BuildOnnxruntimeParams]
) -> dict[str, dict[str, list[int]]]:
    """Open `shipped` as a server would and run it at each shape point; returns {point: {output: shape}}."""
    import numpy as np

    from stages.runtimes.onnx.io import random_inputs, run_onnx, session_from_onnx
    from stages.runtimes.onnxrt.providers import unavailable

    missing = unavailable(p.providers)
    if missing:
        raise ValueError(f"providers: {missing}")
    try:
        session = session_from_onnx(shipped, providers=p.providers, graph_optimization=p.graph_optimization)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors derive from Exception alone
        raise ValueError(
            f"onnxruntime cannot open {MODEL_ONNX} ({p.graph_optimization} graph optimization, "
            f"{', '.join(p.providers)}): {_ort_error(exc)}"
        ) from None
    spec = ctx.model
    if spec is not None and spec.tensors:
        feeds_at = {pt: {n: spec.shape(n, pt) for n in spec.tensors} for pt in DIM_POINTS}
    else:
        shapes = {i.name: tuple(i.shape) for i in session.get_inputs()}
        symbolic = [n for n, s in shapes.items() if not all(isinstance(d, int) for d in s)]
        if symbolic:
            ctx.warn(
                f"the check only opened the model: input {symbolic[0]!r} has symbolic dims and the recipe "
                "declares no model.tensors to run it at"
            )
            return {}
        feeds_at = {"opt": shapes}
    results: dict[str, dict[str, list[int]]] = {}
    seen: set[tuple] = set()
    for point, shapes in feeds_at.items():
        key = tuple(sorted(shapes.items()))
        if key in seen:
            continue
        seen.add(key)
        where = f"at the {point} shape " + ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
        try:
            outs = run_onnx(session, random_inputs(session, shapes, p.check_seed))
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors derive from Exception alone
            raise ValueError(f"the model failed to run {where}: {_ort_error(exc)}") from None
        for out in info.outputs:
            value = np.asarray(outs[out.name])
            if value.dtype.kind in "fc" and not np.isfinite(value).all():
                bad = int((~np.isfinite(value)).sum())
                raise ValueError(f"output {out.name!r} has {bad} non-finite values of {value.size} {where}")
            if out.dims is not None and (
                len(out.dims) != value.ndim or any(isinstance(d, int) and d != s for d, s in zip(out.dims, value.shape))
            ):
                declared = list(out.dims)
                raise ValueError(
                    f"output {out.name!r} has shape {list(value.shape)} {where}, but the graph declares {declared}"
                )
        results[point] = {name: list(np.shape(v)) for name, v in outs.items()}
    return results


def _ort_error(exc: Exception) -> str:
    """ONNX Runtime's message without its status prefix and C++ source location: what failed, and why."""
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(exc))
    text = re.sub(r"/onnxruntime_src/\S+:\d+ \S+\(.*?\) ", "", text)
    return one_line(text, 300)
