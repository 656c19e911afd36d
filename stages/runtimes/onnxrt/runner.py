"""The ONNX Runtime runner: the FP32 reference, QDQ or FP16 ONNX candidates, and build.onnxruntime's engines.

Its session comes from the project's one session factory (`runtimes.onnx.io.session_from_onnx`)
and its input dtypes from the one dtype table (`runtimes.dtypes`). A bare .onnx file
runs on the CPU provider at ONNX Runtime's default graph optimization; an engine
(its EngineInfo given: `runtimes.runners` reads the directory's engine.json) runs
with the providers and graph optimization level the build recorded and checked,
and a provider missing here makes the runner unavailable rather than fall back
to the CPU. onnx and onnxruntime are imported when a runner is made, not when
this module is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from stages.runtimes.base import Mode, RunnerUnavailable, cast_feeds
from stages.runtimes.cpu import available_cpus
from stages.runtimes.dtypes import dtype_of_ort
from stages.runtimes.engine_info import EngineInfo
from stages.runtimes.layers import LayerProfile
from stages.runtimes.measure import Timing, batch_of, measure, timed_loop
from stages.runtimes.onnx.io import session_from_onnx
from stages.runtimes.onnxrt.graph import precision_of
from stages.runtimes.onnxrt.providers import unavailable

CPU_ONLY = ("CPUExecutionProvider",)


class OrtRunner:
    """ONNX Runtime on the CPU. Latency and throughput modes both run one request at a time
    (intra-op threads fill the cores); `requests` is always 1.

    The session comes from `runtimes.onnx.io.session_from_onnx` with `threads` intra-op
    threads, by default every CPU this process may use (`runtimes.cpu.available_cpus`),
    not the self-checks' two: the reference is timed beside the candidate.
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: Path | str,
        threads: int | None = None,
        precision: str | None = None,
        info: EngineInfo | None = None,
    ) -> None:
        """`info`: the EngineInfo of a build.onnxruntime engine whose .onnx `path` is (its providers, graph
        optimization and precision); None for a bare .onnx file."""
        self.path = Path(path)
        if info is not None and info.backend != "onnxruntime":
            raise ValueError(f"{self.path}: its engine.json describes a {info.backend} engine, not an ONNX Runtime one")
        self.info = info
        details = info.details if info else {}
        self.providers = tuple(details.get("providers") or CPU_ONLY)
        self.graph_optimization = str(details.get("graph_optimization") or "all")
        if self.providers != CPU_ONLY:
            missing = unavailable(self.providers)
            if missing:
                raise RunnerUnavailable(f"ONNX Runtime runner: {self.path.parent.name}/engine.json: {missing}")
        self.threads = threads or available_cpus()
        self.session = session_from_onnx(self.path, self.threads, self.providers, self.graph_optimization)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._dtypes = {i.name: dtype_of_ort(i.type) for i in self.session.get_inputs()}
        built = info.precision if info else onnx_precision(self.path)
        self.precision = precision or f"{built} (onnxruntime)"

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(self.output_names, self._cast(feeds))
        return dict(zip(self.output_names, outs))

    def benchmark(
        self, feeds: Mapping[str, np.ndarray], mode: Mode = "latency", min_seconds: float = 2.0, warmup: int = 5
    ) -> Timing:
        cast = self._cast(feeds)
        names = self.output_names
        run = self.session.run
        for _ in range(max(1, warmup)):
            run(names, cast)
        return measure(
            timed_loop(lambda: run(names, cast)), mode=mode, batch=batch_of(feeds), requests=1, min_seconds=min_seconds
        )

    def profile(self, feeds: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3) -> LayerProfile:
        """Per-layer times from a session of its own with profiling on (`runtimes.onnxrt.profiling`), opened with
        this runner's threads, providers and graph optimization: the timed session never profiles."""
        from stages.runtimes.onnxrt.profiling import profile_session

        return profile_session(
            self.path, self.threads, self.providers, self.graph_optimization, self._cast(feeds), runs, warmup
        )

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "runner": self.name,
            "precision": self.precision,
            "onnxruntime": ort.__version__,
            "intra_op_threads": self.threads,
            "provider": self.session.get_providers()[0],
            "graph_optimization": self.graph_optimization,
        }

    def _cast(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return cast_feeds(self.path.name, self._dtypes, feeds)


def onnx_precision(path: Path | str) -> str:
    """'int8' for QDQ or integer-op graphs, 'fp16'/'bf16' for half-precision graphs, else 'fp32'
    (`onnxrt.graph.precision_of`, which build.onnxruntime records in engine.json)."""
    import onnx

    return precision_of(onnx.load(str(path), load_external_data=False))
