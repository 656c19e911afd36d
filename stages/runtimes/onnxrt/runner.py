"""The ONNX Runtime runner: the FP32 reference, and QDQ or FP16 ONNX candidates, on the CPU.

Its session comes from the project's one session factory (`runtimes.onnx.io.session_from_onnx`)
and its input dtypes from the one dtype table (`runtimes.dtypes`). onnx and
onnxruntime are imported when a runner is made, not when this module is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from stages.runtimes.base import Mode, cast_feeds
from stages.runtimes.cpu import available_cpus
from stages.runtimes.dtypes import dtype_of_ort
from stages.runtimes.measure import Timing, batch_of, measure, timed_loop
from stages.runtimes.onnx.io import session_from_onnx

_QUANT_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLinear",
    "MatMulNBits",
}


class OrtRunner:
    """ONNX Runtime on the CPU. Latency and throughput modes both run one request at a time
    (intra-op threads fill the cores); `requests` is always 1.

    The session comes from `runtimes.onnx.io.session_from_onnx` with `threads` intra-op
    threads, by default every CPU this process may use (`runtimes.cpu.available_cpus`),
    not the self-checks' two: the reference is timed beside the candidate.
    """

    name = "onnxruntime"

    def __init__(self, path: Path | str, threads: int | None = None, precision: str | None = None) -> None:
        self.path = Path(path)
        self.threads = threads or available_cpus()
        self.session = session_from_onnx(self.path, threads=self.threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._dtypes = {i.name: dtype_of_ort(i.type) for i in self.session.get_inputs()}
        self.precision = precision or f"{onnx_precision(self.path)} (onnxruntime)"

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

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "runner": self.name,
            "precision": self.precision,
            "onnxruntime": ort.__version__,
            "intra_op_threads": self.threads,
            "provider": "CPUExecutionProvider",
        }

    def _cast(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return cast_feeds(self.path.name, self._dtypes, feeds)


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
