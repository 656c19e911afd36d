"""TensorRT's per-layer profile: the engine inspector's layers, timed by an `IProfiler` on a context of its own.

`IExecutionContext.profiler` takes a `tensorrt.IProfiler` subclass whose
`report_layer_time(layer_name, ms)` TensorRT calls once per layer after each
inference (with `enqueue_emits_profile`, its default, `execute_async_v3` reports
synchronously). The profiled context is created for this alone and dropped
after, so the contexts the runner times never carry a profiler. Layer types,
kernels (tactics) and precisions come from
`create_engine_inspector().get_engine_information(LayerInformationFormat.JSON)`;
the merge is `runtimes.tensorrt.layers.layer_times` (pure, tested on inspector
JSON). tensorrt and cuda-python are reached through the runner, never imported here.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

import numpy as np

from stages.runtimes.layers import LayerProfile, median_ms
from stages.runtimes.tensorrt.cudart import _handle, _ok
from stages.runtimes.tensorrt.layers import layer_times


def inspector_json(engine: Any, trt: Any) -> Any:
    """The engine inspector's JSON, parsed (None when the engine cannot say: built without it)."""
    try:
        return json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception:  # noqa: BLE001 - an engine built with profiling verbosity NONE says nothing; times still come
        return None


def recording_profiler(trt: Any) -> Any:
    """An IProfiler that keeps every reported time: `.times[layer name]` is one entry per inference."""

    class Recording(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.times: dict[str, list[float]] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times.setdefault(layer_name, []).append(float(ms))

    return Recording()


def profile_engine(runner: Any, feeds: Mapping[str, np.ndarray], runs: int, warmup: int) -> LayerProfile:
    """Bind `feeds` through the runner's buffers, run `warmup` + `runs` inferences on a fresh context with a
    recording profiler on the runner's stream, and merge the last `runs` times into the inspector's layers."""
    trt, cudart = runner._trt, runner._cudart
    runs = max(1, runs)
    runner._bind(feeds)  # uploads into the runner's device buffers and sets the shapes on its own context
    stream = runner._stream
    _ok(cudart.cudaStreamSynchronize(stream))
    context = runner.engine.create_execution_context()
    try:
        profiler = recording_profiler(trt)
        context.profiler = profiler
        for name in runner.input_names:
            if not context.set_input_shape(name, tuple(runner.context.get_tensor_shape(name))):
                raise ValueError(f"{runner.path.name}: input {name!r}: shape rejected by the profiling context")
        for name in (*runner.input_names, *runner.output_names):
            context.set_tensor_address(name, runner._buffers[name][0])
        walls: list[float] = []
        for _ in range(max(0, warmup) + runs):
            t0 = time.perf_counter()
            if not context.execute_async_v3(_handle(stream)):
                raise RuntimeError(f"{runner.path.name}: execute_async_v3 failed while profiling")
            _ok(cudart.cudaStreamSynchronize(stream))
            walls.append((time.perf_counter() - t0) * 1e3)
        layers, notes = layer_times(inspector_json(runner.engine, trt), profiler.times, runs)
    finally:
        del context
    return LayerProfile("tensorrt", runs, tuple(layers), 0, median_ms(walls[-runs:]), tuple(notes))
