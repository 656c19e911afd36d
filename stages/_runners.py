"""Runners: one small interface over the inference engines `validate` compares and times.

A runner loads an artifact, runs it on numpy feeds and times it. `runner_for`
picks one by artifact type: an ``.onnx`` file runs in ONNX Runtime (the FP32
reference, and QDQ or FP16 ONNX candidates); a directory holding ``model.xml``
runs in OpenVINO; a TensorRT plan will get its runner with the TensorRT work.

Timing follows OpenVINO's benchmark_app: warm-up first, then at least
``min_seconds`` of inference; latency mode is one request with the LATENCY hint,
throughput mode is an AsyncInferQueue of ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``
requests with the THROUGHPUT hint, inputs set once per request. The machine is
shared, so every measurement also records how much CPU *other* processes took
meanwhile and is repeated when that exceeds a small share of one core.

OpenVINO's CPU plugin runs in bf16 by default on CPUs with AVX512_BF16 or AMX,
so the precision hint is always set explicitly: from the IR's ``engine.json``
unless overridden, else f32.
"""
from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Protocol

import numpy as np

from stages._cpu import ISA_FLAGS, available_cpus, cpu_identity  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    import openvino

Mode = Literal["latency", "throughput"]

# Re-measure when other processes took more than this share of one core.
OTHER_CPU_LIMIT = 0.08
MAX_ATTEMPTS = 3
OV_PRECISIONS = ("f32", "bf16", "f16")
# CPU flags that change which kernels run and OpenVINO's default precision.

class RunnerUnavailable(RuntimeError):
    """The artifact's engine cannot run on this machine."""


@dataclass(frozen=True)
class Timing:
    """One measurement: latencies per request, throughput in samples/s, and how noisy the machine was."""

    mode: str
    batch: int
    requests: int  # inference requests in flight
    iterations: int  # inferences measured (each of `batch` samples)
    seconds: float  # wall time of the measured loop
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float  # samples per second
    cpu_other_fraction: float  # CPU other processes used meanwhile, in cores (0.25 = a quarter of one core)
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class Runner(Protocol):
    """What `validate` needs of an engine; a TensorRT runner implements the same members.

    `infer` takes feeds keyed by input name (cast to the engine's dtypes inside) and
    returns fresh arrays keyed by output name. `benchmark` warms up, then times at
    least `min_seconds` through `measure`, which handles the noisy-machine retries.
    """

    name: str  # "onnxruntime", "openvino", ...
    precision: str  # what it computes in: "fp32 (onnxruntime)", "f32", "bf16", "int8 (bf16 exec)"
    input_names: list[str]
    output_names: list[str]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def benchmark(self, feeds: Mapping[str, np.ndarray], mode: Mode = "latency", min_seconds: float = 2.0,
                  warmup: int = 5) -> Timing: ...

    def describe(self) -> dict[str, Any]:
        """Versions and the settings the engine actually runs with (for the report's environment)."""
        ...


def runner_for(path: Path | str, precision: str | None = None, threads: int | None = None,
               device: str | None = None) -> Runner:
    """The runner for an artifact: `.onnx` -> ONNX Runtime, a dir with model.xml -> OpenVINO."""
    path = Path(path)
    if path.suffix in (".engine", ".plan") or (path.is_dir() and any(path.glob("*.engine")) and not _xml_of(path)):
        from stages._trt_runner import TensorRTRunner  # raises RunnerUnavailable naming what was probed

        return TensorRTRunner(path, precision=precision, threads=threads, device=device)
    if path.is_file() and path.suffix == ".onnx":
        return OrtRunner(path, threads=threads, precision=precision)
    if (path.is_dir() and _xml_of(path)) or (path.is_file() and path.suffix == ".xml"):
        return OpenVinoRunner(path, precision=precision, threads=threads, device=device)
    raise ValueError(f"no runner for {path}: expected an .onnx file or a directory holding model.xml")


# -- measuring ---------------------------------------------------------------------------------------


class CpuMeter:
    """CPU time other processes use on our CPUs while we measure.

    Busy jiffies of the CPUs in our affinity mask (/proc/stat: user, nice, system,
    irq, softirq and steal) minus our own process's CPU time (getrusage, all
    threads), over the wall time: 0.0 on a quiet machine, 1.0 when another
    process kept one core busy. Returns None where /proc/stat is missing.
    """

    def __init__(self) -> None:
        self.tick = 1.0 / os.sysconf("SC_CLK_TCK")
        try:
            self.cpus: set[int] | None = set(os.sched_getaffinity(0))
        except AttributeError:
            self.cpus = None
        self._start: tuple[float, float, float] | None = None

    def _busy(self) -> float | None:
        try:
            with open("/proc/stat") as f:
                lines = [ln.split() for ln in f if ln.startswith("cpu")]
        except OSError:
            return None
        per_cpu = {int(p[0][3:]): p for p in lines if p[0] != "cpu"}
        rows = [per_cpu[c] for c in sorted(self.cpus or ()) if c in per_cpu] or [p for p in lines if p[0] == "cpu"]
        busy = 0
        for p in rows:
            v = [int(x) for x in p[1:]] + [0] * 8
            busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
        return busy * self.tick

    @staticmethod
    def _own() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def start(self) -> None:
        busy = self._busy()
        self._start = None if busy is None else (busy, self._own(), time.perf_counter())

    def stop(self) -> tuple[float, float] | None:
        """(other processes' CPU in cores, the measurement's resolution in cores), or None if unknown."""
        busy = self._busy()
        if self._start is None or busy is None:
            return None
        b0, o0, t0 = self._start
        wall = max(time.perf_counter() - t0, 1e-9)
        other = max(0.0, (busy - b0) - (self._own() - o0)) / wall
        # /proc/stat counts in ticks: each CPU's count may be off by one tick at each end.
        resolution = 2 * len(self.cpus or (0,)) * self.tick / wall
        return other, resolution


LoopFn = Callable[[float], "tuple[list[float], int, float]"]  # min_seconds -> (latencies ms, iterations, wall s)


def measure(loop: LoopFn, *, mode: str, batch: int, requests: int, min_seconds: float,
            max_attempts: int | None = None, other_limit: float | None = None) -> Timing:
    """Run `loop` until other processes stayed under `other_limit` cores (at most `max_attempts` times;
    defaults: the module's OTHER_CPU_LIMIT and MAX_ATTEMPTS, read at call time).

    Keeps the attempt with the least interference; `Timing.attempts` says how many ran.
    """
    max_attempts = max(1, max_attempts or MAX_ATTEMPTS)
    other_limit = OTHER_CPU_LIMIT if other_limit is None else other_limit
    best: Timing | None = None
    for attempt in range(1, max_attempts + 1):
        meter = CpuMeter()
        meter.start()
        latencies, iterations, seconds = loop(min_seconds)
        noise = meter.stop()
        other, resolution = noise if noise is not None else (0.0, 0.0)
        lat = sorted(latencies) or [0.0]
        timing = Timing(mode=mode, batch=batch, requests=requests, iterations=iterations, seconds=seconds,
                        p50_ms=_percentile(lat, 50), p90_ms=_percentile(lat, 90), p99_ms=_percentile(lat, 99),
                        throughput=batch * iterations / max(seconds, 1e-9), cpu_other_fraction=other,
                        attempts=attempt)
        if best is None or timing.cpu_other_fraction < best.cpu_other_fraction:
            best = timing
        if other - resolution <= other_limit:
            break
    assert best is not None
    return Timing(**{**asdict(best), "attempts": attempt})


def _percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile, as benchmark_app computes it."""
    index = max(0, int(np.ceil(len(sorted_values) * percent / 100)) - 1)
    return float(sorted_values[index])


def _timed_loop(step: Callable[[], None]) -> LoopFn:
    """A synchronous loop of `step`, each call timed: latency mode, and ORT's throughput mode."""
    def loop(min_seconds: float) -> tuple[list[float], int, float]:
        times: list[float] = []
        clock = time.perf_counter
        start = clock()
        while True:
            t0 = clock()
            step()
            t1 = clock()
            times.append((t1 - t0) * 1e3)
            if t1 - start >= min_seconds:
                return times, len(times), t1 - start
    return loop


def batch_of(feeds: Mapping[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


# -- ONNX Runtime ------------------------------------------------------------------------------------

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger",
              "DynamicQuantizeLinear", "MatMulNBits"}


class OrtRunner:
    """ONNX Runtime on the CPU. Latency and throughput modes both run one request at a time
    (intra-op threads fill the cores); `requests` is always 1."""

    name = "onnxruntime"

    def __init__(self, path: Path | str, threads: int | None = None, precision: str | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.threads = threads or available_cpus()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._dtypes = {i.name: np.dtype(_ORT_DTYPES.get(i.type, np.float32)) for i in self.session.get_inputs()}
        self.precision = precision or f"{onnx_precision(self.path)} (onnxruntime)"

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, self._cast(feeds))
        return dict(zip(self.output_names, outs))

    def benchmark(self, feeds: Mapping[str, np.ndarray], mode: Mode = "latency", min_seconds: float = 2.0,
                  warmup: int = 5) -> Timing:
        cast = self._cast(feeds)
        names = self.output_names
        run = self.session.run
        for _ in range(max(1, warmup)):
            run(names, cast)
        return measure(_timed_loop(lambda: run(names, cast)), mode=mode, batch=batch_of(feeds), requests=1,
                       min_seconds=min_seconds)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runner": self.name, "precision": self.precision, "onnxruntime": ort.__version__,
                "intra_op_threads": self.threads, "provider": "CPUExecutionProvider"}

    def _cast(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(self.input_names) - set(feeds)
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {sorted(missing)} (given: {sorted(feeds)})")
        return {n: np.ascontiguousarray(feeds[n], dtype=self._dtypes[n]) for n in self.input_names}


def onnx_precision(path: Path | str) -> str:
    """'int8' for QDQ or integer-op graphs, 'fp16'/'bf16' for half-precision graphs, else 'fp32'."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    if any(n.op_type in _QUANT_OPS for n in graph.node):
        return "int8"
    types = {t.data_type for t in graph.initializer}
    types |= {v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)}
    if onnx.TensorProto.FLOAT16 in types:
        return "fp16"
    if onnx.TensorProto.BFLOAT16 in types:
        return "bf16"
    return "fp32"


# -- OpenVINO ----------------------------------------------------------------------------------------


def _xml_of(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix == ".xml" else None
    if (path / "model.xml").is_file():
        return path / "model.xml"
    xmls = sorted(path.glob("*.xml"))
    return xmls[0] if len(xmls) == 1 else None


def read_engine_json(path: Path | str) -> dict[str, Any]:
    """The build's `engine.json` beside the IR, or {} (an NNCF IR may come without one)."""
    path = Path(path)
    meta = (path if path.is_dir() else path.parent) / "engine.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}


class OpenVinoRunner:
    """An OpenVINO IR compiled for the CPU (or `device`) with an explicit inference precision.

    One compiled model per performance hint: LATENCY for `infer` and latency
    timing, THROUGHPUT for throughput timing (an AsyncInferQueue of the compiled
    model's optimal number of requests, as benchmark_app does).
    """

    name = "openvino"

    def __init__(self, path: Path | str, precision: str | None = None, threads: int | None = None,
                 device: str | None = None) -> None:
        import openvino as ov

        self.path = Path(path)
        xml = _xml_of(self.path)
        if xml is None:
            raise ValueError(f"{self.path}: no model.xml")
        self.meta = read_engine_json(xml)
        requested = precision or self.meta.get("inference_precision") or "f32"
        if requested not in OV_PRECISIONS:
            raise ValueError(f"OpenVINO inference precision {requested!r}: expected one of {', '.join(OV_PRECISIONS)}")
        self.requested_precision = requested
        self.device = device or self.meta.get("device") or "CPU"
        self.threads = threads
        self.core = ov.Core()
        self.model = self.core.read_model(str(xml))
        self.int8 = any(op.get_type_name() == "FakeQuantize" for op in self.model.get_ops())
        self._compiled: dict[str, Any] = {}
        self._request: Any = None
        compiled = self._compile("LATENCY")
        self.input_names = [_port_name(p, self.meta.get("input_names") or self.meta.get("inputs"))
                            for p in compiled.inputs]
        self.output_names = [_port_name(p, self.meta.get("output_names") or self.meta.get("outputs"))
                             for p in compiled.outputs]
        self._dtypes = {n: np.dtype(p.get_element_type().to_dtype()) for n, p in zip(self.input_names, compiled.inputs)}
        self.execution_precision = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        label = self.execution_precision
        self.precision = f"int8 ({label} exec)" if self.int8 else label

    def _compile(self, hint: str) -> "openvino.CompiledModel":
        if hint not in self._compiled:
            config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": self.requested_precision}
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = int(self.threads)
            self._compiled[hint] = self.core.compile_model(self.model, self.device, config)
        return self._compiled[hint]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._request is None:
            self._request = self._compile("LATENCY").create_infer_request()
        self._request.infer(self._cast(feeds), share_inputs=False)
        return {n: np.array(self._request.get_output_tensor(i).data, copy=True)
                for i, n in enumerate(self.output_names)}

    def benchmark(self, feeds: Mapping[str, np.ndarray], mode: Mode = "latency", min_seconds: float = 2.0,
                  warmup: int = 5) -> Timing:
        import openvino as ov

        tensors = {n: ov.Tensor(a) for n, a in self._cast(feeds).items()}
        batch = batch_of(feeds)
        if mode == "latency":
            request = self._compile("LATENCY").create_infer_request()
            for n, t in tensors.items():
                request.set_tensor(n, t)
            for _ in range(max(1, warmup)):
                request.infer()
            return measure(_timed_loop(request.infer), mode=mode, batch=batch, requests=1, min_seconds=min_seconds)

        compiled = self._compile("THROUGHPUT")
        nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(compiled, nireq)
        for request in queue:  # inputs set once per request; the loop only starts inferences
            for n, t in tensors.items():
                request.set_tensor(n, t)
        for _ in range(max(1, warmup)):
            for _ in range(len(queue)):
                queue.start_async()
            queue.wait_all()
        return measure(_async_loop(queue), mode=mode, batch=batch, requests=len(queue), min_seconds=min_seconds)

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        info: dict[str, Any] = {"runner": self.name, "precision": self.precision, "openvino": ov.get_version(),
                                "device": self.device, "requested_precision": self.requested_precision,
                                "execution_precision": self.execution_precision, "int8": self.int8}
        for hint, compiled in self._compiled.items():
            props = {}
            for key in ("NUM_STREAMS", "INFERENCE_NUM_THREADS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
                        "INFERENCE_PRECISION_HINT", "ENABLE_CPU_PINNING"):
                try:
                    value = compiled.get_property(key)
                    props[key] = _type_name(value) if key == "INFERENCE_PRECISION_HINT" else str(value)
                except RuntimeError:
                    pass
            info[hint.lower()] = props
        return info

    def _cast(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = set(self.input_names) - set(feeds)
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {sorted(missing)} (given: {sorted(feeds)})")
        return {n: np.ascontiguousarray(feeds[n], dtype=self._dtypes[n]) for n in self.input_names}


def _async_loop(queue: Any) -> LoopFn:
    """benchmark_app's inference-only async loop: keep every request busy, read each one's latency when it
    comes back idle, stop after `min_seconds` on a whole round of requests."""
    def loop(min_seconds: float) -> tuple[list[float], int, float]:
        clock = time.perf_counter
        nireq = len(queue)
        times: list[float] = []
        in_flight: set[int] = set()
        iterations = 0
        start = clock()
        elapsed = 0.0
        while elapsed < min_seconds or iterations % nireq:
            idle = queue.get_idle_request_id()
            if idle in in_flight:
                times.append(queue[idle].latency)
            else:
                in_flight.add(idle)
            queue.start_async()
            iterations += 1
            elapsed = clock() - start
        queue.wait_all()
        seconds = clock() - start
        times.extend(queue[i].latency for i in in_flight)
        return times, iterations, seconds
    return loop


def _port_name(port: Any, preferred: Any) -> str:
    """The port's name as the build recorded it (engine.json), else any of its names."""
    names = set(port.get_names())
    if isinstance(preferred, dict):
        preferred = list(preferred)
    for name in preferred or ():
        if isinstance(name, str) and name in names:
            return name
    return port.get_any_name()


def _type_name(value: Any) -> str:
    """An ov.Type (or its string form) as OpenVINO's short name: f32, bf16, f16."""
    if hasattr(value, "get_type_name"):
        return str(value.get_type_name())
    v = str(value).lower()
    for long, short in (("bfloat16", "bf16"), ("bf16", "bf16"), ("float16", "f16"), ("f16", "f16"),
                        ("float32", "f32"), ("f32", "f32")):
        if long in v:
            return short
    return str(value)


# -- hardware identity -------------------------------------------------------------------------------


