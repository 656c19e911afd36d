"""Multi-stream throughput on TensorRT as plain data: how many contexts run at once and why, the profile copies
build.tensorrt adds for them (checked on a stand-in for TensorRT's builder API), the trtexec line; on a host with
an NVIDIA GPU and tensorrt, the runner times several streams and beats or matches one."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_build_tensorrt import A100, SPEC, gpu, needs_gpu, params

from stages.runtimes.tensorrt import build as trt_build
from stages.runtimes.tensorrt.plan import build_plan
from stages.runtimes.tensorrt.streams import DEFAULT_STREAMS, StreamInputs, plan_streams

MiB = 2**20
ROOMY = StreamInputs(dynamic=False, profiles=1, activation_bytes=100 * MiB, io_bytes=20 * MiB, free_bytes=20_000 * MiB)


def test_latency_is_one_context_whatever_the_engine() -> None:
    plan = plan_streams("latency", ROOMY)
    assert (plan.streams, plan.profile_of) == (1, (0,))
    assert plan_streams("latency", ROOMY, requested=4).streams == 1


def test_throughput_default_is_benchmark_apps_gpu_count_on_a_static_engine() -> None:
    plan = plan_streams("throughput", ROOMY)
    assert plan.streams == DEFAULT_STREAMS == 2
    assert plan.profile_of == (0, 0)  # a static engine: every context on profile 0
    assert plan.per_stream_bytes == 120 * MiB and "default" in plan.reason


def test_dynamic_engine_gets_one_context_per_profile() -> None:
    one = StreamInputs(dynamic=True, profiles=1, activation_bytes=MiB, io_bytes=MiB, free_bytes=10_000 * MiB)
    plan = plan_streams("throughput", one)
    assert plan.streams == 1 and "optimization profile" in plan.reason
    four = StreamInputs(dynamic=True, profiles=4, activation_bytes=MiB, io_bytes=MiB, free_bytes=10_000 * MiB)
    assert plan_streams("throughput", four).profile_of == (0, 1)
    assert plan_streams("throughput", four, requested=4).profile_of == (0, 1, 2, 3)
    with pytest.raises(
        ValueError,
        match=r"streams: 3 contexts of a dynamic-shape engine need 3 optimization "
        r"profiles, the engine has 1 \(build it with build.tensorrt's profiles: 3\)",
    ):
        plan_streams("throughput", one, requested=3)


def test_memory_bounds_the_count() -> None:
    tight = StreamInputs(
        dynamic=False, profiles=1, activation_bytes=700 * MiB, io_bytes=100 * MiB, free_bytes=2_000 * MiB
    )
    plan = plan_streams("throughput", tight)  # half of 2000 MiB holds one 800 MiB context
    assert plan.streams == 1 and "free device memory" in plan.reason
    assert plan_streams("throughput", tight, memory_fraction=0.9).streams == 2
    with pytest.raises(ValueError, match=r"streams: 3 contexts need 2400 MiB of device memory, 2000 MiB is free"):
        plan_streams("throughput", tight, requested=3)
    starved = StreamInputs(dynamic=False, profiles=1, activation_bytes=4_000 * MiB, io_bytes=0, free_bytes=MiB)
    assert plan_streams("throughput", starved).streams == 1  # never below one: the run itself says if it fails


def test_an_asked_for_count_is_kept_and_a_bad_one_refused() -> None:
    plan = plan_streams("throughput", ROOMY, requested=6)
    assert plan.streams == 6 and plan.reason == "streams: 6 (asked for)"
    assert plan.as_dict()["profile_of"] == (0,) * 6
    with pytest.raises(ValueError, match="at least 1"):
        plan_streams("throughput", ROOMY, requested=0)


def test_profiles_param_repeats_the_profile_in_plan_and_trtexec(tmp_path: Path) -> None:
    plan = build_plan(params(profiles=3, timing_cache=False), SPEC, A100, "m.onnx", None)
    assert plan.profile_copies == 3
    args = plan.trtexec_args(onnx="m.onnx")
    assert args.count("--minShapes=input:1x3x224x224") == 3 and args.count("--maxShapes=input:32x3x224x224") == 3
    static = build_plan(params(profiles=3, shapes="static", timing_cache=False), SPEC, A100, "m.onnx", None)
    # static: the ONNX's dynamic dims fixed at opt, still one profile per context
    assert static.trtexec_args(onnx="m.onnx").count("--minShapes=input:8x3x224x224") == 3
    with pytest.raises(ValueError):
        params(profiles=0)


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Any, ...]] = {}

    def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


def test_add_profile_makes_one_profile_object_per_copy() -> None:
    """TensorRT's builder API as the build calls it: each copy is its own IOptimizationProfile."""
    added: list[_Profile] = []
    builder = SimpleNamespace(create_optimization_profile=_Profile)
    network = SimpleNamespace(num_inputs=1, get_input=lambda i: SimpleNamespace(name="input", shape=(-1, 3, 224, 224)))
    config = SimpleNamespace(add_optimization_profile=lambda p: added.append(p) or len(added) - 1)
    plan = build_plan(params(profiles=2, timing_cache=False), SPEC, A100, "m.onnx", None)
    trt_build._add_profile(builder, network, config, plan)
    assert len(added) == 2 and added[0] is not added[1]
    assert added[1].shapes == {"input": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}
    static = SimpleNamespace(num_inputs=1, get_input=lambda i: SimpleNamespace(name="input", shape=(8, 3, 224, 224)))
    added.clear()
    trt_build._add_profile(builder, static, config, plan)
    assert added == []  # nothing dynamic: no profile at all


# -- the lanes, on a stand-in for cuda-python and TensorRT (call by call, as the runner makes them) ---------------


class _Cudart:
    """cuda-python's runtime calls the lanes make, each returning `(error, value)` as the bindings do."""

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1)

    def __init__(self) -> None:
        self.live: set[int] = set()  # streams, buffers and events not yet freed
        self.next = 100
        self.copies: list[tuple[int, int]] = []

    def _new(self) -> tuple[int, int]:
        self.next += 1
        self.live.add(self.next)
        return 0, self.next

    def cudaStreamCreate(self) -> tuple[int, int]:
        return self._new()

    def cudaEventCreate(self) -> tuple[int, int]:
        return self._new()

    def cudaMalloc(self, n: int) -> tuple[int, int]:
        return self._new()

    def cudaFree(self, ptr: int) -> tuple[int]:
        self.live.remove(ptr)
        return (0,)

    cudaStreamDestroy = cudaEventDestroy = cudaFree

    def cudaMemcpyAsync(self, dst: int, src: int, n: int, kind: int, stream: int) -> tuple[int]:
        self.copies.append((dst, stream))
        return (0,)

    def cudaStreamSynchronize(self, stream: int) -> tuple[int]:
        return (0,)

    def cudaEventRecord(self, event: int, stream: int) -> tuple[int]:
        return (0,)

    def cudaEventSynchronize(self, event: int) -> tuple[int]:
        return (0,)

    def cudaEventElapsedTime(self, a: int, b: int) -> tuple[int, float]:
        return 0, 0.5


class _Context:
    def __init__(self) -> None:
        self.profile = 0
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.enqueued: list[int] = []

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        self.profile = index
        return True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.shapes["input"][0], 10)

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.addresses[name] = ptr


def test_lanes_bind_their_own_buffers_profiles_and_streams_and_free_them() -> None:
    import numpy as np

    from stages.runtimes.tensorrt.lanes import Lane, close_lanes, lanes_loop, open_lanes
    from stages.runtimes.tensorrt.streams import StreamPlan

    cudart, made = _Cudart(), []

    def create_execution_context() -> _Context:
        made.append(_Context())
        return made[-1]

    engine = SimpleNamespace(create_execution_context=create_execution_context)
    first = Lane(_Context(), stream=7, own=False)
    plan = StreamPlan(streams=3, profile_of=(0, 1, 2), per_stream_bytes=0, reason="test")
    uploads = {"input": np.zeros((4, 3), np.float32)}
    lanes = open_lanes(cudart, engine, first, plan, uploads, {"logits": np.dtype(np.float32)}, "m.engine")
    assert lanes[0] is first and len(lanes) == 3 and [c.profile for c in made] == [1, 2]
    assert all(c.shapes == {"input": (4, 3)} and set(c.addresses) == {"input", "logits"} for c in made)
    pointers = [p for c in made for p in c.addresses.values()]
    assert len(set(pointers)) == 4  # every lane its own input and output buffers
    assert [s for _, s in cudart.copies] == [lanes[1].stream, lanes[2].stream]  # each upload on its lane's stream

    def enqueue(context: Any, stream: int) -> None:
        context.enqueued.append(stream)

    first.context.enqueued = []
    loop, events = lanes_loop(cudart, lanes, enqueue, group=4)
    times, iterations, seconds = loop(0.0)
    assert iterations == len(times) == 12 and all(t == 0.5 for t in times)  # 4 per lane, one round
    assert [len(lane.context.enqueued) for lane in lanes] == [4, 4, 4]
    assert made[0].enqueued == [lanes[1].stream] * 4  # each context enqueued on its own stream
    for e in events:
        cudart.cudaEventDestroy(e)
    close_lanes(cudart, lanes)
    assert cudart.live == set()  # buffers, streams and events all freed; lane 0's stream is the runner's


def test_a_failing_lane_frees_what_the_others_made() -> None:
    import numpy as np

    from stages.runtimes.tensorrt.lanes import Lane, open_lanes
    from stages.runtimes.tensorrt.streams import StreamPlan

    cudart, calls = _Cudart(), []

    def create_execution_context() -> _Context | None:
        calls.append(1)
        return _Context() if len(calls) == 1 else None  # TensorRT returns None when it cannot make one

    engine = SimpleNamespace(create_execution_context=create_execution_context)
    plan = StreamPlan(streams=3, profile_of=(0, 0, 0), per_stream_bytes=0, reason="test")
    with pytest.raises(RuntimeError, match="m.engine: TensorRT could not make execution context 3"):
        open_lanes(
            cudart,
            engine,
            Lane(_Context(), 7, own=False),
            plan,
            {"input": np.zeros((2, 3), np.float32)},
            {"logits": np.dtype(np.float32)},
            "m.engine",
        )
    assert cudart.live == set()


# -- on a GPU with tensorrt ------------------------------------------------------------------------------------


@gpu
@needs_gpu
def test_two_streams_on_a_two_profile_engine(tmp_path: Path) -> None:
    from harness import run_stage
    from test_quantize_qdq import TINY_SPEC, tiny_resnet

    from stages.build_tensorrt import BuildTensorrt
    from stages.runtimes.onnx.io import random_inputs, session_from_onnx
    from stages.runtimes.tensorrt.runner import TensorRTRunner

    src = tiny_resnet(tmp_path / "tiny.onnx")
    run_stage(BuildTensorrt, tmp_path / "b", {"profiles": 2}, inputs={"model": str(src)}, model=TINY_SPEC)
    engine = tmp_path / "b" / "engine" / "model.engine"
    feeds = random_inputs(session_from_onnx(src), {"input": (4, 3, 8, 8)}, seed=0)
    one = TensorRTRunner(engine, streams=1)
    two = TensorRTRunner(engine)  # chosen: two (two profiles, plenty of memory)
    rates = {}
    for name, runner in (("one", one), ("two", two)):
        timing = runner.benchmark(feeds, "throughput", min_seconds=0.3, warmup=2)
        rates[name] = timing.throughput
        assert timing.requests == runner.last_stream_plan.streams
    assert two.describe()["streams"]["profile_of"] == (0, 1) and rates["two"] > 0.8 * rates["one"]
    with pytest.raises(ValueError, match="need 3 optimization profiles, the engine has 2"):
        TensorRTRunner(engine, streams=3).benchmark(feeds, "throughput", min_seconds=0.1)
    one.close()
    two.close()
