"""A TensorRT engine as a `runtimes.base.Runner`: deserialize, an execution context per CUDA stream.

Device memory, copies, the stream and timing events come from cuda-python's
runtime bindings (`cuda.bindings.runtime`; NVIDIA's TensorRT samples,
samples/python/common_runtime.py, use the same calls through the older
`cuda.cudart` path), not torch: the tensorrt extra stays small and the
bindings are thin wrappers over the CUDA runtime API (statically linked into
`cuda.bindings.runtime`; it uses the device's primary context, as TensorRT
does). Per
call, `infer` sets each input's shape on the context (`set_input_shape`, so
any batch inside the engine's profile works), grows device buffers when a
shape needs more, binds addresses (`set_tensor_address`), enqueues
`execute_async_v3` and copies outputs back. `benchmark` uploads inputs once
and times only the engine on the GPU with CUDA events: latency is one
synchronised inference at a time; throughput keeps several execution contexts
in flight, each on its own stream (trtexec's `--infStreams`; the count from
`runtimes.tensorrt.streams`, the lanes in `runtimes.tensorrt.lanes`), enqueues
inferences back to back on all of them and divides by wall time.

Engines are executable artifacts: this runner only loads engines from the
pipeline's own, digest-verified store, which is why it allows the host code a
version-compatible engine embeds (`Runtime.engine_host_code_allowed`).

With the build's EngineInfo (engine.json, `runtimes.engine_info`), the precision label
is the build's (no inspector call), a deserialization failure names the GPU and
TensorRT the engine was built for, and an engine.json whose I/O names are not
this engine's is an error rather than a silently wrong description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from stages.runtimes.base import Mode, RunnerUnavailable, cast_feeds
from stages.runtimes.dtypes import dtype_of_trt
from stages.runtimes.engine_info import EngineInfo
from stages.runtimes.layers import LayerProfile
from stages.runtimes.measure import Timing, batch_of, measure
from stages.runtimes.tensorrt.cudart import _cudart, _handle, _ok
from stages.runtimes.tensorrt.lanes import Lane, close_lanes, lanes_loop, open_lanes
from stages.runtimes.tensorrt.layers import precision_from_layers
from stages.runtimes.tensorrt.streams import StreamInputs, StreamPlan, plan_streams

THROUGHPUT_GROUP = 16  # inferences enqueued between synchronisations in throughput mode


def _np_dtype(dtype: Any, name: str) -> np.dtype:
    """The numpy dtype of an I/O tensor's TensorRT DataType (from the one table, `runtimes.dtypes`)."""
    found = dtype_of_trt(getattr(dtype, "name", str(dtype)))
    if found is None:  # BF16, FP8, INT4: no numpy type
        raise ValueError(
            f"I/O tensor {name!r} is {getattr(dtype, 'name', dtype)}, which numpy cannot hold; keep the "
            "model's inputs and outputs FP32/FP16 (onnx.fp16 keep_io_types)"
        )
    return found


def engine_file(path: Path | str) -> Path:
    """The engine file itself, or the one `.engine`/`.plan` file inside a directory."""
    path = Path(path)
    if path.is_dir():
        found = sorted([*path.glob("*.engine"), *path.glob("*.plan")])
        if len(found) != 1:
            raise ValueError(f"{path}: expected one .engine or .plan file, found {len(found)}")
        return found[0]
    return path


class TensorRTRunner:
    """A serialized TensorRT engine on the current CUDA device (optimization profile 0)."""

    name = "tensorrt"

    def __init__(
        self,
        path: Path | str,
        precision: str | None = None,
        threads: int | None = None,
        device: str | int | None = None,
        info: EngineInfo | None = None,
        streams: int | None = None,
    ) -> None:
        """`streams`: contexts in flight when timing throughput (None: chosen by `runtimes.tensorrt.streams`)."""
        from stages.runtimes.tensorrt.probe import cuda_python_available, probe_gpu, unmet_reason

        if info is not None and info.backend != "tensorrt":
            raise ValueError(f"{path}: its engine.json describes a {info.backend} engine, not a TensorRT engine")

        probe = probe_gpu()
        reason = unmet_reason(probe, cuda_python_available())
        if reason:
            raise RunnerUnavailable(f"TensorRT runner: {reason}")
        import tensorrt as trt

        self._trt, self._cudart = trt, _cudart()
        if device is not None and str(device).removeprefix("cuda:").isdigit():
            _ok(self._cudart.cudaSetDevice(int(str(device).removeprefix("cuda:"))))
        self.path = engine_file(path)
        self.probe = probe
        self._buffers: dict[str, tuple[int, int]] = {}  # tensor -> (device pointer, bytes)
        self._stream: Any = None
        self._pending: dict[str, np.ndarray] = {}  # host inputs of the last upload, alive until the stream syncs
        self._logger = trt.Logger(trt.Logger.WARNING)  # must outlive the runtime
        self.runtime = trt.Runtime(self._logger)
        self.runtime.engine_host_code_allowed = True
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ValueError(
                f"{self.path.name}: TensorRT {trt.__version__} cannot deserialize this engine "
                + (
                    f"({built_for(info)}; this host: {probe.gpu}, sm {probe.compute_capability})"
                    if info
                    else f"(built with another TensorRT version, or for another GPU than {probe.gpu}?)"
                )
            )
        self.info = info
        self.streams = streams
        self.last_stream_plan: StreamPlan | None = None
        self.context = self.engine.create_execution_context()
        self._stream = _ok(self._cudart.cudaStreamCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        if info is not None:
            check_io(info, self.path.name, self.input_names, self.output_names)
        self._dtypes = {n: _np_dtype(self.engine.get_tensor_dtype(n), n) for n in names}
        self.precision = precision or f"{info.precision if info else self._inspected_precision()} (tensorrt)"

    def _inspected_precision(self) -> str:
        """The lowest precision the engine's layers compute in, from its inspector (fp32 when it says nothing)."""
        try:
            import json

            layers = json.loads(
                self.engine.create_engine_inspector().get_engine_information(self._trt.LayerInformationFormat.JSON)
            )
            return precision_from_layers(layers)
        except Exception:  # noqa: BLE001 - an engine built without detailed verbosity says less; fall back
            return "fp32"

    # -- running ---------------------------------------------------------------------------------

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        outputs = self._bind(feeds)
        if not self.context.execute_async_v3(_handle(self._stream)):
            raise RuntimeError(f"{self.path.name}: execute_async_v3 failed")
        for name, host in outputs.items():
            if host.nbytes:
                _ok(
                    cudart.cudaMemcpyAsync(
                        host.ctypes.data,
                        self._buffers[name][0],
                        host.nbytes,
                        cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                        self._stream,
                    )
                )
        _ok(cudart.cudaStreamSynchronize(self._stream))
        return outputs

    def benchmark(
        self, feeds: Mapping[str, np.ndarray], mode: Mode = "latency", min_seconds: float = 2.0, warmup: int = 5
    ) -> Timing:
        """Latency: one context, one inference at a time. Throughput: the contexts `stream_plan` chooses, each on
        its own stream (`runtimes.tensorrt.lanes`), inferences enqueued back to back on all of them."""
        cudart = self._cudart
        outputs = self._bind(feeds)
        uploads = dict(self._pending)
        _ok(cudart.cudaStreamSynchronize(self._stream))
        plan = self.stream_plan(mode, sum(a.nbytes for a in (*uploads.values(), *outputs.values())))
        first = Lane(self.context, self._stream, own=False)
        lanes = open_lanes(
            cudart, self.engine, first, plan, uploads, {n: self._dtypes[n] for n in self.output_names}, self.path.name
        )

        def enqueue(context: Any, stream: int) -> None:  # execute_async_v3 reports failure by returning False
            if not context.execute_async_v3(stream):
                raise RuntimeError(f"{self.path.name}: execute_async_v3 failed")

        events: list[Any] = []
        try:
            for lane in lanes:
                for _ in range(max(1, warmup)):
                    enqueue(lane.context, _handle(lane.stream))
            for lane in lanes:
                _ok(cudart.cudaStreamSynchronize(lane.stream))
            loop, events = lanes_loop(cudart, lanes, enqueue, 1 if mode == "latency" else THROUGHPUT_GROUP)
            return measure(loop, mode=mode, batch=batch_of(feeds), requests=len(lanes), min_seconds=min_seconds)
        finally:
            for e in events:
                cudart.cudaEventDestroy(e)
            close_lanes(cudart, lanes)

    def stream_plan(self, mode: Mode, io_bytes: int) -> StreamPlan:
        """How many contexts to keep in flight (`runtimes.tensorrt.streams`), from this engine and device."""
        engine = self.engine
        activation = getattr(engine, "device_memory_size_v2", None)
        free, _total = _ok(self._cudart.cudaMemGetInfo())
        inputs = StreamInputs(
            dynamic=any(d < 0 for n in self.input_names for d in engine.get_tensor_shape(n)),
            profiles=int(engine.num_optimization_profiles),
            activation_bytes=int(activation if activation is not None else engine.device_memory_size),
            io_bytes=io_bytes,
            free_bytes=int(free),
        )
        self.last_stream_plan = plan_streams(mode, inputs, self.streams)
        return self.last_stream_plan

    def profile(self, feeds: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3) -> LayerProfile:
        """Per-layer times from an IProfiler on an execution context of its own (`runtimes.tensorrt.profiling`),
        with the inspector's layer types, tactics and precisions: the timed contexts never carry a profiler."""
        from stages.runtimes.tensorrt.profiling import profile_engine

        return profile_engine(self, feeds, runs, warmup)

    def describe(self) -> dict[str, Any]:
        profile = {}
        for n in self.input_names:
            if any(d < 0 for d in self.engine.get_tensor_shape(n)):
                profile[n] = [list(s) for s in self.engine.get_tensor_profile_shape(n, 0)]
        return {
            "runner": self.name,
            "precision": self.precision,
            "tensorrt": self._trt.__version__,
            "gpu": self.probe.gpu,
            "compute_capability": self.probe.compute_capability,
            "driver": self.probe.driver,
            "engine": self.path.name,
            "profile": profile,
            "streams": self.last_stream_plan.as_dict() if self.last_stream_plan else None,
        }

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr, _ in self._buffers.values():
            cudart.cudaFree(ptr)
        self._buffers.clear()
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- buffers ---------------------------------------------------------------------------------

    def _bind(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Set input shapes, upload inputs and bind every address; returns empty host arrays for the outputs."""
        cudart = self._cudart
        uploads = cast_feeds(self.path.name, {n: self._dtypes[n] for n in self.input_names}, feeds)
        for name, arr in uploads.items():
            if not self.context.set_input_shape(name, arr.shape):
                rng = [list(s) for s in self.engine.get_tensor_profile_shape(name, 0)]
                raise ValueError(
                    f"{self.path.name}: input {name!r} shape {list(arr.shape)} is outside the engine's "
                    f"profile (min, opt, max) {rng}"
                )
            ptr = self._buffer(name, arr.nbytes)
            if arr.nbytes:
                _ok(
                    cudart.cudaMemcpyAsync(
                        ptr, arr.ctypes.data, arr.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream
                    )
                )
            self.context.set_tensor_address(name, ptr)
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ValueError(
                    f"{self.path.name}: output {name!r} has a data-dependent shape {list(shape)}, "
                    "which this runner does not support"
                )
            outputs[name] = np.empty(shape, dtype=self._dtypes[name])
            self.context.set_tensor_address(name, self._buffer(name, outputs[name].nbytes))
        self._pending = uploads
        return outputs

    def _buffer(self, name: str, nbytes: int) -> int:
        """A device buffer of at least `nbytes` for `name`, reallocated only when it must grow."""
        ptr, size = self._buffers.get(name, (0, 0))
        if size < max(nbytes, 1):
            if ptr:
                _ok(self._cudart.cudaFree(ptr))
            size = max(nbytes, 256)
            ptr = int(_ok(self._cudart.cudaMalloc(size)))
            self._buffers[name] = (ptr, size)
        return ptr


def built_for(info: EngineInfo) -> str:
    """What an engine was built for, from its EngineInfo: `built for NVIDIA L4 (sm 8.9) with TensorRT 10.13.0.35`."""
    return f"built for {info.device} with TensorRT {info.toolchain.get('tensorrt', 'unknown')}"


def check_io(info: EngineInfo, engine: str, inputs: list[str], outputs: list[str]) -> None:
    """ValueError when engine.json's I/O names are not the engine's (a sidecar of another engine)."""
    if sorted(info.input_names) != sorted(inputs) or sorted(info.output_names) != sorted(outputs):
        raise ValueError(
            f"{engine}: its engine.json lists inputs {info.input_names} and outputs {info.output_names}, "
            f"the engine has {inputs} and {outputs}: the sidecar belongs to another engine"
        )


def runner_from_engine(
    path: Path | str,
    precision: str | None = None,
    threads: int | None = None,
    device: str | None = None,
    info: EngineInfo | None = None,
) -> TensorRTRunner:
    """`runner_for`'s TensorRT branch: RunnerUnavailable (naming what was probed) where it cannot run."""
    return TensorRTRunner(path, precision=precision, threads=threads, device=device, info=info)
