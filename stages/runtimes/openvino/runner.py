"""The OpenVINO runner: an IR compiled for the CPU (or another device) with an explicit precision.

Timing follows OpenVINO's benchmark_app: latency mode is one request with the
LATENCY hint, throughput mode is an AsyncInferQueue of
``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` requests with the THROUGHPUT hint, inputs
set once per request.

OpenVINO's CPU plugin runs in bf16 by default on CPUs with AVX512_BF16 or AMX,
so the precision hint is always set explicitly: the caller's, else the
`inference_precision` of the IR's typed ``engine.json`` (`runtimes.engine_info`), else
f32 (an NNCF IR comes without one). The device and the port names the build
recorded come from the same EngineInfo. openvino is imported when a runner is made.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from stages.runtimes import engine_info
from stages.runtimes.base import Mode, cast_feeds
from stages.runtimes.engine_info import EngineInfo
from stages.runtimes.layers import LayerProfile
from stages.runtimes.measure import LoopFn, Timing, batch_of, measure, timed_loop
from stages.runtimes.openvino.io import ir_xml

if TYPE_CHECKING:
    import openvino

OV_PRECISIONS = ("f32", "bf16", "f16")


class OpenVinoRunner:
    """An OpenVINO IR compiled for the CPU (or `device`) with an explicit inference precision.

    One compiled model per performance hint: LATENCY for `infer` and latency
    timing, THROUGHPUT for throughput timing (an AsyncInferQueue of the compiled
    model's optimal number of requests, as benchmark_app does).
    """

    name = "openvino"

    def __init__(
        self,
        path: Path | str,
        precision: str | None = None,
        threads: int | None = None,
        device: str | None = None,
        info: EngineInfo | None = None,
        model: "openvino.Model | None" = None,
    ) -> None:
        """`info`: the IR's EngineInfo when the caller has read it (else read here from engine.json, if any).
        `model`: a model already in memory (a search's variant of an IR), run instead of reading `path`."""
        import openvino as ov

        self.path = Path(path)
        xml = ir_xml(self.path) if model is None else self.path
        if info is None and model is None and engine_info.sidecar(xml) is not None:
            info = engine_info.read(xml)
        if info is not None and info.backend != "openvino":
            raise ValueError(f"{self.path}: its engine.json describes a {info.backend} engine, not an OpenVINO IR")
        self.info = info
        requested = precision or (info.inference_precision if info else None) or "f32"
        if requested not in OV_PRECISIONS:
            raise ValueError(f"OpenVINO inference precision {requested!r}: expected one of {', '.join(OV_PRECISIONS)}")
        self.requested_precision = requested
        self.device = device or (info.device.device if info else None) or "CPU"
        self.threads = threads
        self.core = ov.Core()
        self.model = model if model is not None else self.core.read_model(str(xml))
        self.int8 = any(op.get_type_name() == "FakeQuantize" for op in self.model.get_ops())
        self._compiled: dict[str, Any] = {}
        self._request: Any = None
        compiled = self._compile("LATENCY")
        self.input_names = [_port_name(p, info.input_names if info else ()) for p in compiled.inputs]
        self.output_names = [_port_name(p, info.output_names if info else ()) for p in compiled.outputs]
        self._dtypes = {n: np.dtype(p.get_element_type().to_dtype()) for n, p in zip(self.input_names, compiled.inputs)}
        self.execution_precision = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        label = self.execution_precision
        self.precision = f"int8 ({label} exec)" if self.int8 else label

    def _config(self, hint: str) -> dict[str, Any]:
        """The compile config of every compiled model of this engine: hint, precision, threads, and the sparse-weight
        decompression rate as build.openvino compiled it (validate measures the engine that ships)."""
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": self.requested_precision}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        rate = self.info.details.get("sparse_weights_decompression_rate") if self.info else None
        if rate is not None:
            config["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] = float(rate)
        return config

    def _compile(self, hint: str) -> "openvino.CompiledModel":
        if hint not in self._compiled:
            self._compiled[hint] = self.core.compile_model(self.model, self.device, self._config(hint))
        return self._compiled[hint]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._request is None:
            self._request = self._compile("LATENCY").create_infer_request()
        self._request.infer(self._cast(feeds), share_inputs=False)
        return {
            n: np.array(self._request.get_output_tensor(i).data, copy=True) for i, n in enumerate(self.output_names)
        }

    def benchmark(
        self, feeds: Mapping[str, np.ndarray], mode: Mode = "latency", min_seconds: float = 2.0, warmup: int = 5
    ) -> Timing:
        import openvino as ov

        tensors = {n: ov.Tensor(a) for n, a in self._cast(feeds).items()}
        batch = batch_of(feeds)
        if mode == "latency":
            request = self._compile("LATENCY").create_infer_request()
            for n, t in tensors.items():
                request.set_tensor(n, t)
            for _ in range(max(1, warmup)):
                request.infer()
            return measure(timed_loop(request.infer), mode=mode, batch=batch, requests=1, min_seconds=min_seconds)

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

    def profile(self, feeds: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3) -> LayerProfile:
        """Per-layer times (`runtimes.openvino.profiling`) on a model compiled for this alone, PERF_COUNT on, with
        the LATENCY hint, precision and threads the latency timing uses: the timed compiled models never count
        layers, so profiling does not slow their figures. The profiling model is not kept."""
        import openvino as ov

        from stages.runtimes.openvino.profiling import profile_request

        config = {**self._config("LATENCY"), "PERF_COUNT": True}
        request = self.core.compile_model(self.model, self.device, config).create_infer_request()
        tensors = {n: ov.Tensor(a) for n, a in self._cast(feeds).items()}
        return profile_request(request, tensors, runs, warmup)

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        info: dict[str, Any] = {
            "runner": self.name,
            "precision": self.precision,
            "openvino": ov.get_version(),
            "device": self.device,
            "requested_precision": self.requested_precision,
            "execution_precision": self.execution_precision,
            "int8": self.int8,
        }
        for hint, compiled in self._compiled.items():
            props = {}
            for key in (
                "NUM_STREAMS",
                "INFERENCE_NUM_THREADS",
                "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
                "INFERENCE_PRECISION_HINT",
                "ENABLE_CPU_PINNING",
            ):
                try:
                    value = compiled.get_property(key)
                    props[key] = _type_name(value) if key == "INFERENCE_PRECISION_HINT" else str(value)
                except RuntimeError:
                    pass
            info[hint.lower()] = props
        return info

    def _cast(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return cast_feeds(self.path.name, self._dtypes, feeds)


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


def _port_name(port: Any, preferred: list[str] | tuple[str, ...]) -> str:
    """The port's name as the build recorded it (engine.json), else any of its names."""
    names = set(port.get_names())
    return next((name for name in preferred if name in names), port.get_any_name())


def _type_name(value: Any) -> str:
    """An ov.Type (or its string form) as OpenVINO's short name: f32, bf16, f16."""
    if hasattr(value, "get_type_name"):
        return str(value.get_type_name())
    v = str(value).lower()
    for long, short in (
        ("bfloat16", "bf16"),
        ("bf16", "bf16"),
        ("float16", "f16"),
        ("f16", "f16"),
        ("float32", "f32"),
        ("f32", "f32"),
    ):
        if long in v:
            return short
    return str(value)
