"""The runner protocol: what `validate` needs of an inference engine, whichever runs the artifact.

A runner loads an artifact, runs it on numpy feeds and times it. ONNX Runtime
(`runtimes.onnxrt.runner`), OpenVINO (`runtimes.openvino.runner`) and TensorRT (`runtimes.tensorrt.runner`)
implement it; `runtimes.runners.runner_for` picks one. A new runtime implements these
members and adds one branch there; nothing else imports a runner by name.
This module imports numpy only, so a runner module can depend on it without
depending on any other runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Mapping, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from stages.runtimes.layers import LayerProfile
    from stages.runtimes.measure import Timing

Mode = Literal["latency", "throughput"]


class RunnerUnavailable(RuntimeError):
    """The artifact's engine cannot run on this machine (the message names what was probed)."""


@runtime_checkable
class Runner(Protocol):
    """One engine, loaded.

    `infer` takes feeds keyed by input name (cast to the engine's dtypes inside) and
    returns fresh arrays keyed by output name. `benchmark` warms up, then times at
    least `min_seconds` through `runtimes.measure.measure`, which handles the noisy-machine retries.
    `profile` times every layer (`runtimes.layers.LayerProfile`: median over `runs` after
    `warmup`) on an engine instance of its own with the runtime's profiler on (a compiled model,
    session or execution context made for it), so the instances `benchmark` times never profile.
    """

    name: str  # "onnxruntime", "openvino", "tensorrt"
    precision: str  # what it computes in: "fp32 (onnxruntime)", "f32", "bf16", "int8 (bf16 exec)"
    input_names: list[str]
    output_names: list[str]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def benchmark(
        self, feeds: Mapping[str, np.ndarray], mode: Mode = "latency", min_seconds: float = 2.0, warmup: int = 5
    ) -> "Timing": ...

    def profile(self, feeds: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3) -> "LayerProfile": ...

    def describe(self) -> dict[str, Any]:
        """Versions and the settings the engine actually runs with (for the report's environment)."""
        ...


def cast_feeds(
    artifact: str,
    dtypes: Mapping[str, np.dtype],
    feeds: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """`feeds` as contiguous arrays of each input's dtype (`dtypes` in input order); ValueError naming
    `artifact` and the missing inputs when some are absent."""
    missing = set(dtypes) - set(feeds)
    if missing:
        raise ValueError(f"{artifact}: missing inputs {sorted(missing)} (given: {sorted(feeds)})")
    return {n: np.ascontiguousarray(feeds[n], dtype=dt) for n, dt in dtypes.items()}
