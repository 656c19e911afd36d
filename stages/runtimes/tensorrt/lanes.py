"""Several execution contexts of one TensorRT engine in flight, each on its own CUDA stream (trtexec's
`--infStreams`): the runner's throughput timing when its `StreamPlan` has more than one stream.

A lane is one context, its stream and its device buffers. Lane 0 is the runner's own context (profile 0,
inputs already bound); every other lane is made here: a new context, which on a dynamic-shape engine
selects the profile the plan gives it (`set_optimization_profile_async`), its inputs set and uploaded, its
outputs bound to buffers of its own. The timed loop enqueues a group of inferences on every lane, then waits
for all of them: the GPU overlaps the streams, and throughput is every lane's inferences over the wall time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from stages.runtimes.measure import LoopFn
from stages.runtimes.tensorrt.cudart import _handle, _ok
from stages.runtimes.tensorrt.streams import StreamPlan


@dataclass
class Lane:
    context: Any
    stream: Any
    own: bool  # made here, so closed here (lane 0 belongs to the runner)
    buffers: list[int] = field(default_factory=list)  # device pointers this lane allocated


def open_lanes(
    cudart: Any,
    engine: Any,
    first: Lane,
    plan: StreamPlan,
    uploads: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.dtype],
    engine_name: str,
) -> list[Lane]:
    """`first` plus `plan.streams - 1` new lanes, each with `uploads` on the device and outputs bound."""
    lanes = [first]
    try:
        for index in range(1, plan.streams):
            context = engine.create_execution_context()
            if context is None:
                raise RuntimeError(f"{engine_name}: TensorRT could not make execution context {index + 1}")
            lane = Lane(context, _ok(cudart.cudaStreamCreate()), own=True)
            lanes.append(lane)
            stream = _handle(lane.stream)
            if plan.profile_of[index] and not context.set_optimization_profile_async(plan.profile_of[index], stream):
                raise RuntimeError(f"{engine_name}: cannot select optimization profile {plan.profile_of[index]}")
            for name, host in uploads.items():
                if not context.set_input_shape(name, host.shape):
                    raise RuntimeError(f"{engine_name}: input {name!r} shape {list(host.shape)} rejected")
                ptr = _alloc(cudart, lane, host.nbytes)
                if host.nbytes:
                    kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
                    _ok(cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, lane.stream))
                context.set_tensor_address(name, ptr)
            for name, dtype in outputs.items():
                shape = tuple(context.get_tensor_shape(name))
                context.set_tensor_address(name, _alloc(cudart, lane, int(np.prod(shape)) * np.dtype(dtype).itemsize))
            _ok(cudart.cudaStreamSynchronize(lane.stream))  # `uploads` may be freed once this returns
    except BaseException:
        close_lanes(cudart, lanes)
        raise
    return lanes


def lanes_loop(
    cudart: Any, lanes: list[Lane], enqueue: Callable[[Any, int], None], group: int
) -> tuple[LoopFn, list[Any]]:
    """The timed loop over every lane (`group` inferences enqueued per lane per round, each timed between two
    CUDA events) and the events it records with, for the caller to destroy."""
    made: list[Any] = []
    try:
        for _ in range(len(lanes) * (group + 1)):
            made.append(_ok(cudart.cudaEventCreate()))
    except BaseException:  # the ones made so far are freed here: the caller never sees them
        for event in made:
            cudart.cudaEventDestroy(event)
        raise
    events = [made[i * (group + 1) : (i + 1) * (group + 1)] for i in range(len(lanes))]

    def loop(seconds: float) -> tuple[list[float], int, float]:
        times: list[float] = []
        start = time.perf_counter()
        while True:
            for lane, marks in zip(lanes, events):  # enqueue on every stream before waiting on any
                handle = _handle(lane.stream)
                _ok(cudart.cudaEventRecord(marks[0], lane.stream))
                for i in range(group):
                    enqueue(lane.context, handle)
                    _ok(cudart.cudaEventRecord(marks[i + 1], lane.stream))
            for marks in events:
                _ok(cudart.cudaEventSynchronize(marks[group]))
                times += [_ok(cudart.cudaEventElapsedTime(marks[i], marks[i + 1])) for i in range(group)]
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return times, len(times), elapsed

    return loop, made


def close_lanes(cudart: Any, lanes: list[Lane]) -> None:
    """Free what the lanes made here (buffers, streams, contexts); lane 0 stays the runner's."""
    for lane in lanes:
        if not lane.own:
            continue
        for ptr in lane.buffers:
            cudart.cudaFree(ptr)
        lane.buffers.clear()
        cudart.cudaStreamDestroy(lane.stream)
        lane.context = None


def _alloc(cudart: Any, lane: Lane, nbytes: int) -> int:
    ptr = int(_ok(cudart.cudaMalloc(max(nbytes, 256))))
    lane.buffers.append(ptr)
    return ptr
