"""How many inferences a TensorRT engine keeps in flight when it is timed for throughput: plain data.

trtexec's `--infStreams=N` (formerly `--streams`) runs N execution contexts, each on
its own CUDA stream with its own I/O buffers, and reports the sum of their rates.
Two rules of TensorRT bound N: each context in concurrent use of a dynamic-shape
engine needs an optimization profile of its own (`IExecutionContext`: "each
execution context in concurrent use must use a separate optimization profile";
`build.tensorrt`'s `profiles` builds copies), and every context holds its own
activation memory (`ICudaEngine.device_memory_size_v2`) and I/O buffers.

When the count is not given it is chosen as OpenVINO's benchmark_app chooses its
request count: it asks the device for its optimal number of requests under the
THROUGHPUT hint, which for a GPU is a small number of streams (two) unless device
memory does not hold them. Here: `DEFAULT_STREAMS`, lowered to what the profiles
and `memory_fraction` of the free device memory allow, never below one. Latency is
always one context. Nothing here imports tensorrt: the runner fills `StreamInputs`
from the engine and the device, and tests build them by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

DEFAULT_STREAMS = 2  # OpenVINO's GPU plugin under the THROUGHPUT hint: two streams when memory allows
MEMORY_FRACTION = 0.5  # share of the free device memory the contexts may take together


@dataclass(frozen=True)
class StreamInputs:
    """What the choice depends on, read from the engine and the device."""

    dynamic: bool  # the engine has dynamic input dims (then each concurrent context needs its own profile)
    profiles: int  # the engine's optimization profiles (ICudaEngine.num_optimization_profiles)
    activation_bytes: int  # one context's device memory (ICudaEngine.device_memory_size_v2)
    io_bytes: int  # one context's input + output buffers at the timed batch
    free_bytes: int  # free device memory (cudaMemGetInfo) before any context of the run is made


@dataclass(frozen=True)
class StreamPlan:
    """The contexts to run: how many, which profile each uses, and why that many."""

    streams: int
    profile_of: tuple[int, ...]  # profile index of each context, in creation order
    per_stream_bytes: int
    reason: str  # one line, for the report

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_streams(
    mode: Literal["latency", "throughput"],
    inputs: StreamInputs,
    requested: int | None = None,
    memory_fraction: float = MEMORY_FRACTION,
) -> StreamPlan:
    """The stream plan for timing in `mode`; ValueError (one line) when a `requested` count cannot run."""
    if requested is not None and requested < 1:
        raise ValueError(f"streams: {requested} (expected at least 1)")
    per_stream = inputs.activation_bytes + inputs.io_bytes
    by_memory = max(1, int(inputs.free_bytes * memory_fraction) // per_stream) if per_stream > 0 else None
    by_profiles = max(1, inputs.profiles) if inputs.dynamic else None
    if mode == "latency":
        return StreamPlan(1, (0,), per_stream, "latency: one inference at a time")
    if requested is not None:
        if by_profiles is not None and requested > by_profiles:
            raise ValueError(
                f"streams: {requested} contexts of a dynamic-shape engine need {requested} optimization profiles, "
                f"the engine has {inputs.profiles} (build it with build.tensorrt's profiles: {requested})"
            )
        if by_memory is not None and requested > by_memory:
            raise ValueError(
                f"streams: {requested} contexts need {_mib(requested * per_stream)} of device memory, "
                f"{_mib(inputs.free_bytes)} is free (at most {by_memory} fit in {memory_fraction:.0%} of it)"
            )
        return StreamPlan(requested, _profiles(requested, inputs), per_stream, f"streams: {requested} (asked for)")
    count, why = DEFAULT_STREAMS, f"default {DEFAULT_STREAMS} streams (as benchmark_app's GPU throughput hint)"
    if by_profiles is not None and by_profiles < count:
        count = by_profiles
        why = f"{count}: one per optimization profile of a dynamic-shape engine ({inputs.profiles})"
    if by_memory is not None and by_memory < count:
        count = by_memory
        why = f"{count}: what {memory_fraction:.0%} of {_mib(inputs.free_bytes)} free device memory holds"
    return StreamPlan(count, _profiles(count, inputs), per_stream, why)


def _profiles(count: int, inputs: StreamInputs) -> tuple[int, ...]:
    """Context i uses profile i of a dynamic engine (a profile per concurrent context), profile 0 otherwise."""
    return tuple(range(count)) if inputs.dynamic else (0,) * count


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"
