"""The smoke test every packaging stage runs on each model it packages, before the package is called done.

A serving config is a promise about a file: these inputs, of these types and shapes, give outputs. The smoke
test keeps it on this machine: it loads the packaged file (as written in the repository, not the artifact it
was copied from) with the runtime the server uses for it, sends one seeded request shaped as the config
declares, and checks the outputs are finite, have the shapes the model declares, and agree (cosine, flattened,
float64) with the float reference model run by ONNX Runtime on the same request. A config naming an input the
file lacks, or a file that is not the model the config was written for, fails here with one line naming the
served model, not at the first client request.

OpenVINO compiles on CPU with INFERENCE_PRECISION_HINT set explicitly (the engine's, else f32): left unset, a
CPU with AVX-512 BF16 or AMX runs bf16 and the numbers compared would not be the ones the build checked.
TensorRT runs only where `tensorrt` imports and a GPU answers; elsewhere the result says why it was skipped.
numpy, onnxruntime, openvino and tensorrt are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

from pipeline.errors import one_line
from pipeline.stage import DatasetInput, InputSpec
from stages.packaging.members import Member
from stages.runtimes.engine_info import TensorInfo

if TYPE_CHECKING:
    import numpy as np

Runtime = Literal["openvino", "onnxruntime", "tensorrt"]
# `inference_precision` that asks for what OpenVINO picks by itself (what Triton's OpenVINO backend runs unpinned).
DEFAULT_PRECISION = "default"
Loaded = tuple[dict[str, str], Callable[[dict[str, "np.ndarray"]], dict[str, "np.ndarray"]]]  # input dtypes, run


@dataclass(frozen=True)
class SmokeResult:
    """What one smoke request showed: per output its shape and dtype, and its agreement with the reference
    (None where there was no reference, or it has no output of that name)."""

    model: str  # the served model's name
    ran: bool
    skipped: str | None  # why it did not run ("TensorRT is not installed here"); None when it ran
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    runtime: str | None = None  # what ran it ("openvino f32", "onnxruntime")
    request: dict[str, list[int]] = field(default_factory=dict)  # input -> the shape sent

    def row(self) -> dict[str, Any]:
        """JSON-able, for the packager's report."""
        return {
            "model": self.model,
            "ran": self.ran,
            "skipped": self.skipped,
            "runtime": self.runtime,
            "request": {k: list(v) for k, v in self.request.items()},
            "outputs": {k: dict(v) for k, v in self.outputs.items()},
        }


def smoke_request(
    model: str,
    member: Member,
    files: Sequence[Path],
    shapes: Mapping[str, tuple[int, ...]],
    dtypes: Mapping[str, str],
    reference: Path | None,
    cosine_min: float,
    seed: int = 0,
    *,
    runtime: Runtime | None = None,
    inference_precision: str | None = None,
    sample: Mapping[str, Any] | None = None,
) -> SmokeResult:
    """Run one request through the packaged `files` and check it; ValueError, one line naming `model`, when
    the file does not load, a declared input is missing or of another dtype, an output is not finite or not of
    the shape the model declares, or an output's cosine against `reference` is below `cosine_min`.

    `runtime`: the runtime the server uses for the file, when it is not the member's backend (OVMS serves an
    .onnx with OpenVINO). `inference_precision`: the INFERENCE_PRECISION_HINT the server is configured with,
    when it is not the engine's. `sample`: real inputs (a batch of the recipe's data) the request is cut from;
    without it the request is random, which a quantized engine answers less faithfully (see `cosine_floor`)."""
    import numpy as np

    from stages.runtimes.dtypes import random_array

    runtime = runtime or member.backend
    files = [Path(f) for f in files]
    if runtime == "tensorrt":
        why = _tensorrt_unavailable()
        if why:
            return SmokeResult(model, False, why)
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        dtype = dtypes.get(name) or _declared(member.inputs, name, model)
        if sample is not None:
            feeds[name] = request_from(sample, name, tuple(shape), dtype, model)
            continue
        try:
            feeds[name] = random_array(rng, tuple(shape), dtype)
        except TypeError:
            raise ValueError(f"{model}: input {name!r} is {dtype}, which numpy cannot draw a request in") from None
    if runtime == "openvino":
        asked = inference_precision or (member.info.inference_precision if member.info else None) or "f32"
        hint = None if asked == DEFAULT_PRECISION else asked
        preferred = {t.name for t in member.outputs}
        input_types, run, label = _openvino(model, files, hint, preferred)
    elif runtime == "onnxruntime":
        (input_types, run), label = _onnxruntime(model, files), "onnxruntime"
    else:
        loaded = _tensorrt(model, member, files)
        if isinstance(loaded, str):
            return SmokeResult(model, False, loaded)
        (input_types, run), label = loaded, "tensorrt"
    _check_inputs(model, feeds, {n: dtypes.get(n) or str(a.dtype) for n, a in feeds.items()}, input_types)
    try:
        outputs = run(feeds)
    except Exception as exc:  # a runtime's own error types: the request did not run, said in one line
        raise ValueError(f"{model}: the request {_shapes(feeds)} failed in {label}: {one_line(exc, 300)}") from None
    expected = {t.name: t for t in member.outputs}
    results: dict[str, dict[str, Any]] = {}
    for name, value in outputs.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            nan, inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
            raise ValueError(f"{model}: output {name!r} is not finite ({nan} NaN, {inf} inf of {value.size})")
        if name in expected:
            _check_shape(model, name, value.shape, expected[name].dims)
        results[name] = {"shape": list(value.shape), "dtype": value.dtype.name, "cosine": None, "max_abs": None}
    if reference is not None:
        _compare(model, feeds, outputs, results, Path(reference), cosine_min)
    request = {n: [int(d) for d in a.shape] for n, a in feeds.items()}
    return SmokeResult(model, True, None, results, label, request)


def _declared(tensors: Sequence[TensorInfo], name: str, model: str) -> str:
    for t in tensors:
        if t.name == name:
            return t.dtype
    raise ValueError(f"{model}: no dtype for input {name!r}: the request names an input the model does not declare")


def _shapes(feeds: Mapping[str, Any]) -> str:
    return ", ".join(f"{n} {list(a.shape)}" for n, a in feeds.items())


def _check_inputs(model: str, feeds: Mapping[str, Any], declared: Mapping[str, str], found: Mapping[str, str]) -> None:
    """Every declared input exists in the file with the declared dtype, and the request feeds every file input."""
    for name, dtype in declared.items():
        if name not in found:
            raise ValueError(
                f"{model}: input {name!r} is declared, but the model file has no such input "
                f"(it has: {', '.join(found) or 'none'})"
            )
        if found[name] != dtype:
            raise ValueError(f"{model}: input {name!r} is declared {dtype}, but the model file takes {found[name]}")
    missing = [n for n in found if n not in feeds]
    if missing:
        raise ValueError(f"{model}: the model file's input(s) {', '.join(missing)} are not declared in the request")


def _check_shape(model: str, name: str, shape: tuple[int, ...], dims: tuple[int | str, ...] | None) -> None:
    """The runtime's output shape fits the model's declared dims (an int is exact, "a..b" a range, "?" any)."""
    if dims is None:
        return
    if len(shape) != len(dims) or not all(_fits(n, d) for n, d in zip(shape, dims)):
        shown = "[" + ", ".join(str(d) for d in dims) + "]"
        raise ValueError(f"{model}: output {name!r} came back {list(shape)}, but the model declares {shown}")


def _fits(size: int, dim: int | str) -> bool:
    if isinstance(dim, int):
        return size == dim
    if dim == "?":
        return True
    low, high = dim.split("..")
    return (not low or size >= int(low)) and (not high or size <= int(high))


def _openvino(
    model: str, files: Sequence[Path], hint: str | None, preferred: set[str]
) -> tuple[dict[str, str], Any, str]:
    """Compiled on CPU with `hint` (None: OpenVINO's own default); the label names the precision it took
    ("openvino f32 (asked f16)" where the CPU lacks the one asked for, as a server with that config would run it)."""
    import openvino as ov

    from stages.runtimes.dtypes import name_of_openvino

    source = next((f for f in files if f.suffix.lower() in (".xml", ".onnx")), None)
    if source is None:
        raise ValueError(f"{model}: no .xml or .onnx among {', '.join(f.name for f in files) or 'no files'}")
    core = ov.Core()
    try:
        config = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
        compiled = core.compile_model(core.read_model(str(source)), "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError and its own types; one line either way
        raise ValueError(f"{model}: OpenVINO cannot load {source.name}: {one_line(exc, 300)}") from None
    types: dict[str, str] = {}
    for port in compiled.inputs:
        etype = port.get_element_type()
        dtype = name_of_openvino(etype.get_type_name()) or etype.get_type_name()
        for alias in sorted(port.get_names()):
            types[alias] = dtype
    request = compiled.create_infer_request()

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = request.infer(feeds)
        return {_port_name(port, preferred): out[port] for port in compiled.outputs}

    took = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    asked = f" (asked {hint})" if hint and took != hint else "" if hint else " (the CPU's default)"
    return types, run, f"openvino {took}{asked}"


def _port_name(port: Any, preferred: set[str]) -> str:
    """A port's name as the model declares it (a port may carry several tensor names), else its first name in
    sorted order (stable across runs)."""
    names = sorted(port.get_names())
    return next((n for n in names if n in preferred), names[0] if names else port.get_any_name())


def _onnxruntime(model: str, files: Sequence[Path]) -> Loaded:
    from stages.runtimes.dtypes import ELEMENT_TYPES
    from stages.runtimes.onnx.io import run_onnx, session_from_onnx

    source = next((f for f in files if f.suffix.lower() == ".onnx"), None)
    if source is None:
        raise ValueError(f"{model}: no .onnx among {', '.join(f.name for f in files) or 'no files'}")
    try:
        session = session_from_onnx(source)
    except Exception as exc:  # onnxruntime's pybind errors are not RuntimeErrors
        raise ValueError(f"{model}: ONNX Runtime cannot load {source.name}: {one_line(exc, 300)}") from None
    names = {f"tensor({t.ort})": t.name for t in ELEMENT_TYPES}
    types = {i.name: names.get(i.type, i.type) for i in session.get_inputs()}
    return types, lambda feeds: run_onnx(session, feeds)


def _tensorrt_unavailable() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed here"
    return None


def _tensorrt(model: str, member: Member, files: Sequence[Path]) -> Loaded | str:
    """The engine through the project's TensorRT runner, or why it cannot run here (no GPU)."""
    from stages.runtimes.base import RunnerUnavailable
    from stages.runtimes.tensorrt.runner import runner_from_engine

    plan = next((f for f in files if f.suffix.lower() in (".plan", ".engine")), None)
    if plan is None:
        raise ValueError(f"{model}: no .plan or .engine among {', '.join(f.name for f in files) or 'no files'}")
    try:
        runner = runner_from_engine(plan, info=member.info)
    except RunnerUnavailable as exc:
        return f"needs a GPU ({one_line(str(exc), 200)})"
    except Exception as exc:
        raise ValueError(f"{model}: TensorRT cannot load {plan.name}: {one_line(exc, 300)}") from None
    declared = {t.name: t.dtype for t in member.inputs}
    return {n: declared.get(n, "?") for n in runner.input_names}, runner.infer


def _compare(
    model: str,
    feeds: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    results: dict[str, dict[str, Any]],
    reference: Path,
    cosine_min: float,
) -> None:
    """Fill each output's cosine and max abs difference against `reference` run on the same feeds."""
    import numpy as np

    from stages.runtimes.dtypes import dtype_of_ort
    from stages.runtimes.onnx.io import run_onnx, session_from_onnx

    try:
        session = session_from_onnx(reference)
    except Exception as exc:
        raise ValueError(
            f"{model}: reference {reference.name}: ONNX Runtime cannot load it: {one_line(exc, 300)}"
        ) from None
    ref_inputs = {i.name: dtype_of_ort(i.type) for i in session.get_inputs()}
    missing = [n for n in ref_inputs if n not in feeds]
    if missing:
        raise ValueError(
            f"{model}: reference {reference.name} takes input(s) {', '.join(missing)} the request does not have "
            f"(it has: {', '.join(feeds)})"
        )
    expected = run_onnx(session, {n: np.asarray(feeds[n]).astype(d) for n, d in ref_inputs.items()})
    shared = [n for n in outputs if n in expected]
    if not shared:
        raise ValueError(
            f"{model}: reference {reference.name} has no output of the model's names "
            f"(model: {', '.join(outputs)}; reference: {', '.join(expected)})"
        )
    for name in shared:
        got, want = np.asarray(outputs[name], np.float64), np.asarray(expected[name], np.float64)
        if got.shape != want.shape:
            raise ValueError(
                f"{model}: output {name!r} is {list(got.shape)}, the reference's is {list(want.shape)} (same request)"
            )
        cosine, max_abs = cosine_similarity(got, want), float(np.abs(got - want).max()) if got.size else 0.0
        results[name].update(cosine=round(cosine, 6), max_abs=float(f"{max_abs:.6g}"))
        if cosine < cosine_min:
            raise ValueError(
                f"{model}: output {name!r} cosine {cosine:.4f} < {cosine_min} against {reference.name} "
                f"(max abs diff {max_abs:.3g})"
            )


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two arrays flattened in float64: 1.0 for two all-zero arrays, 0.0 when only one is."""
    import numpy as np

    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 1.0 if nx == ny else 0.0
    return float(np.dot(x, y) / (nx * ny))


# The smoke request's default cosine gates: a float engine reproduces the reference on any request; a quantized
# one only on data like its calibration set. On real samples (a `data` input) it must stay close; on a random
# request (digits INT8 on random normal inputs: 0.87-0.91; on its own data: 0.9997) it only tells the model from
# another one. Accuracy is validate's gate, on the whole dataset; this checks that the served file is the engine.
FLOAT_COSINE_MIN, QUANTIZED_COSINE_MIN, QUANTIZED_RANDOM_COSINE_MIN = 0.99, 0.95, 0.5
# The inputs both packagers take for their smoke requests, beside the `models` they package.
SMOKE_INPUTS = {
    "reference": InputSpec(optional=True, description="the float .onnx each smoke request is compared with"),
    "data": InputSpec(kind="data", optional=True, description="real samples the smoke requests are cut from"),
}
SMOKE_GATE = (
    "least cosine of each output against the reference in the smoke request; None: "
    f"{FLOAT_COSINE_MIN} for a float engine; for an int8/fp8 one {QUANTIZED_COSINE_MIN} on the `data` input's "
    f"samples, {QUANTIZED_RANDOM_COSINE_MIN} on a random request (outside its calibrated ranges) when there is none"
)


def cosine_floor(member: Member, given: float | None, real_data: bool) -> float:
    """The smoke request's cosine gate for `member`: `given`, else by its precision and the request's data."""
    if given is not None:
        return given
    if member.precision in ("int8", "fp8"):
        return QUANTIZED_COSINE_MIN if real_data else QUANTIZED_RANDOM_COSINE_MIN
    return FLOAT_COSINE_MIN


def request_from(sample: Mapping[str, Any], name: str, shape: tuple[int, ...], dtype: str, model: str) -> Any:
    """Input `name` of the request cut from a batch of real samples: its first `shape[0]` samples (repeated when
    the batch has fewer), in the config's dtype; ValueError naming the model when the sample cannot be it."""
    import numpy as np

    if name not in sample:
        raise ValueError(f"{model}: the smoke data has no input {name!r} (it has {', '.join(sorted(sample))})")
    value = np.asarray(sample[name])
    if value.ndim != len(shape) or tuple(value.shape[1:]) != tuple(shape[1:]):
        raise ValueError(
            f"{model}: input {name!r}: the smoke data's samples are {list(value.shape)}, the request is {list(shape)}"
        )
    if not len(value):
        raise ValueError(f"{model}: the smoke data is empty")
    take = np.resize(np.arange(len(value)), shape[0]) if shape else np.arange(0)
    return np.ascontiguousarray(value[take] if shape else value).astype(dtype, copy=False)


def data_sample(data: DatasetInput | None, size: int = 8) -> dict[str, Any] | None:
    """The first `size` samples of a packager's `data` input (what its smoke requests are cut from), or None."""
    if data is None:
        return None
    from stages.data import open_dataset

    for inputs, _ in open_dataset(data, None).batches(size):
        return dict(inputs)
    raise ValueError(f"{data.label}: no samples for the smoke request")
