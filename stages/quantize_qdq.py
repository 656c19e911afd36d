"""quantize.qdq: explicit INT8 quantization for TensorRT, as QuantizeLinear/DequantizeLinear pairs in the ONNX.

TensorRT 11 has no INT8 calibrator and no INT8 builder flag: INT8 exists only
where the ONNX says so, with Q/DQ nodes. This stage writes them with ONNX
Runtime's static quantizer (`quantize_static`, `QuantFormat.QDQ`), calibrated
on the `data` input (streamed through `stages.data`, in batches of one shape
each, so a model with a dynamic sequence length or image size calibrates on
mixed shapes), in the form TensorRT
wants (NVIDIA's explicit-quantization guidance, and the ORT options ModelOpt
passes for TensorRT):

- symmetric INT8 everywhere: activations `QInt8` with `ActivationSymmetric`,
  weights `QInt8` per output channel (Conv axis 0, Gemm/MatMul the output
  axis), so every zero point is 0 (TensorRT supports only symmetric INT8);
- Q/DQ on the *inputs* of the listed op types only, never on their outputs
  (`OpTypesToExcludeOutputQuantization`): TensorRT fuses the following
  BN/ReLU/Add itself and places the output quantization where it helps;
- biases stay float (`QuantizeBias: False`): TensorRT folds them in its kernels;
- `QDQKeepRemovableActivations`: ReLU/Clip are kept, as TensorRT's fusions expect;
- residual Adds: the input coming straight from a conv is left unquantized so
  TensorRT fuses conv + add (see `runtimes.onnx.qdq`).

`quant_pre_process` (symbolic shape inference + ONNX Runtime's basic graph
optimizations) runs first unless `preprocess: false`; it takes ~4.5 s on
ResNet50 and gives the quantizer the shapes it needs. Calibration data that
quantizes fine but ships a broken engine (synthetic, too few samples, nearly
constant: `stages.quantization.calibration`) warns in the summary, quantize.json and the
log. The result is checked
in ONNX Runtime against the input model on a seeded input (figures in the
summary and quantize.json; `check_min_cosine`/`check_max_abs` gate loosely).

NVIDIA ModelOpt (`modelopt.onnx.quantization`) is deliberately not used: its
`[onnx]` extra pins onnx~=1.21 and pulls onnxruntime-gpu, which replaces the
CPU onnxruntime every other ONNX stage here relies on.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from pipeline.errors import one_line
from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    from stages.data import Dataset
    from stages.quantization.calibration import CalibrationStats

DEFAULT_OP_TYPES = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool", "MaxPool"]


class QuantizeQdqParams(Params):
    op_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_OP_TYPES),
        description="ONNX op types whose inputs get Q/DQ (TensorRT fuses these in INT8)",
    )
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names left in float")
    calibrate_method: Literal["MinMax", "Entropy", "Percentile"] = Field(
        "MinMax",
        description="activation ranges: MinMax (max |x|, with symmetric activations), Entropy (KL, "
        "TensorRT's classic choice), Percentile (clip at `percentile`)",
    )
    percentile: float = Field(99.999, gt=0, le=100, description="Percentile calibration's cut")
    samples: int = Field(300, ge=1, description="calibration samples used (fewer if the dataset is smaller)")
    batch_size: int = Field(1, ge=1, description="samples per calibration inference")
    calib_chunk: int = Field(
        16,
        ge=1,
        description="batches whose activations are held at once (bounds memory; ranges are merged across chunks)",
    )
    per_channel: bool = Field(True, description="weights quantized per output channel (false: per tensor)")
    weights: Literal["int8", "qdq_pair"] = Field(
        "int8",
        description="int8: INT8 weight initializers + DequantizeLinear (4x smaller file); qdq_pair: float "
        "weights + QuantizeLinear/DequantizeLinear (TensorRT quantizes them; what ModelOpt emits)",
    )
    residual_add: bool = Field(
        True, description="leave the conv-side input of residual Adds unquantized so TensorRT fuses conv + add"
    )
    preprocess: bool = Field(
        True, description="run onnxruntime's quant_pre_process (shape inference + basic optimizations) first"
    )
    check: bool = Field(True, description="compare the quantized model with the input model in ONNX Runtime")
    check_seed: int = Field(0, description="seed of the check's random input (at the opt shape)")
    check_min_cosine: float | None = Field(
        0.9, ge=-1, le=1, description="fail below this cosine similarity (None: report only)"
    )
    check_max_abs: float | None = Field(
        None, gt=0, description="fail above this max abs difference (None: report only)"
    )


class QuantizeQdq(Stage[QuantizeQdqParams]):
    kind = "quantize.qdq"
    version = "1"
    summary = "Explicit INT8 quantization (Q/DQ nodes) of an ONNX model for TensorRT, calibrated with ONNX Runtime"
    inputs = {
        "model": InputSpec(description="the FP32 .onnx file"),
        "data": InputSpec("data", description="calibration data"),
    }
    outputs = {
        "model": OutputSpec("model.onnx", description="the Q/DQ model"),
        "report": OutputSpec("quantize.json", description="settings, calibration data, Q/DQ counts, check"),
    }
    packages = ("onnx", "onnxruntime")
    extra = "onnx"
    model_fields = ("tensors", "dims")

    def run(self, ctx: StageContext[QuantizeQdqParams]) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        from stages import data
        from stages.quantization.calibration import CalibrationStats, calibration_warnings, no_samples
        from stages.runtimes.onnx import check as onnx_check
        from stages.runtimes.onnx import io as onnxio
        from stages.runtimes.onnx import qdq as qdq_graph

        p = ctx.params
        source = ctx.path("model")
        calib = data.open_dataset(ctx.dataset("data"), ctx.model)
        if calib.count == 0:
            raise no_samples(calib)  # a python source of unknown length is caught by `limited_batches`
        synthetic = data.warn_if_synthetic(calib)
        if synthetic:
            ctx.warn(synthetic)
        original = onnx.load(str(source), load_external_data=False)
        names = [i.name for i in original.graph.input if i.name not in {t.name for t in original.graph.initializer}]
        wanted = p.samples if calib.count is None else min(p.samples, calib.count)  # 0 was caught above
        samples = _fit_static_batch(original, p.batch_size, wanted)
        del original
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="qdq-") as tmp:
            model_in, preprocessed = source, "skipped"
            if p.preprocess:
                model_in, preprocessed = _preprocess(source, Path(tmp) / "pre.onnx")
            stats = CalibrationStats()
            reader = _Reader(calib, p.batch_size, samples, names, ctx.progress, stats)
            extra = {
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
                "OpTypesToExcludeOutputQuantization": sorted(_op_types(model_in)),
                "AddQDQPairToWeight": p.weights == "qdq_pair",
                "DedicatedQDQPair": False,
                "ForceQuantizeNoInputCheck": True,
                "QDQKeepRemovableActivations": True,
                "CalibStridedMinMax": _stride(len(reader), p.calib_chunk),
                "CalibPercentile": p.percentile,
            }
            quantize_static(
                str(model_in),
                str(Path(tmp) / "q.onnx"),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(p.op_types),
                per_channel=p.per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(p.nodes_to_exclude) or None,
                calibrate_method=getattr(CalibrationMethod, p.calibrate_method),
                extra_options=extra,
            )
            quantized = onnx.load(str(Path(tmp) / "q.onnx"), load_external_data=True)
        seconds = time.perf_counter() - started
        warnings = calibration_warnings(calib, stats, p.samples, synthetic)
        for line in warnings:  # the synthetic one again is kept once
            ctx.warn(line)
        fused_adds = qdq_graph.drop_residual_qdq(quantized) if p.residual_add else 0
        qdq_graph.prune_opset_imports(quantized)
        onnx.checker.check_model(quantized)
        qdq = qdq_graph.qdq_stats(quantized)
        if qdq["quantize_linear"] + qdq["dequantize_linear"] == 0:
            raise ValueError(
                f"no Q/DQ nodes were inserted: the model has none of the op types {p.op_types} (or all were excluded)"
            )
        out = ctx.output("model")
        onnxio.save_onnx(onnxio.strip_debug_info(quantized), out)
        del quantized
        check: dict[str, Any] = {}
        if p.check and ctx.model is not None and ctx.model.tensors:
            session = onnxio.session_from_onnx(source)
            feeds = onnxio.random_inputs(session, onnxio.input_shapes(ctx.model, "opt"), p.check_seed)
            check = onnx_check.compare_onnx(source, out, feeds, p.check_max_abs, p.check_min_cosine)
        report = {
            "settings": p.model_dump(mode="json"),
            "calibration": {**calib.info(), "samples": reader.seen},
            "synthetic": calib.synthetic,
            "warning": "; ".join(warnings) or None,
            "warnings": warnings,
            "preprocess": preprocessed,
            "residual_adds_fused": fused_adds,
            "qdq": qdq,
            "check": check,
        }
        ctx.output("report").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        summary: dict[str, Any] = {
            "samples": reader.seen,
            "seconds": round(seconds, 2),
            "synthetic": calib.synthetic,
            "quantized_ops": sum(qdq["quantized_ops"].values()),
            "residual_adds_fused": fused_adds,
            "size_mb": round(out.stat().st_size / 1e6, 2),
            **{f"check_{k}": round(v, 6) for k, v in onnx_check.worst(check).items()},
        }
        if warnings:
            summary["warnings"] = len(warnings)
            summary["warning"] = "; ".join(warnings)
        return summary


class _Reader:
    """ONNX Runtime's CalibrationDataReader over a dataset, in ranges of batches (`set_range`, `__len__`).

    quantize_static calls `set_range` with consecutive ranges (CalibStridedMinMax) and
    collects each range's activations before the next, so at most `calib_chunk`
    batches of intermediate outputs are held at once. Batches may differ in shape
    (ORT's MinMax calibration reduces each batch's activations to their range);
    `__len__` counts the short batches where the shape changes. Every batch also
    goes to `stats` (one pass: ORT reads the data once).
    """

    def __init__(
        self, ds: "Dataset", batch_size: int, limit: int, names: list[str], progress: Any, stats: "CalibrationStats"
    ) -> None:
        from stages.quantization.calibration import batch_count

        self.ds, self.batch_size, self.limit, self.names, self.progress = ds, batch_size, limit, names, progress
        self.stats = stats
        self.seen = 0
        self._left = 0
        self._length = batch_count(ds, batch_size, limit, names)
        self._it = self._batches()

    def __len__(self) -> int:
        return self._length

    def set_range(self, start_index: int, end_index: int) -> None:
        self._left = end_index - start_index

    def get_next(self) -> dict[str, Any] | None:
        if self._left <= 0:
            return None
        self._left -= 1
        return next(self._it, None)

    def _batches(self) -> Any:
        from stages.quantization.calibration import limited_batches

        for inputs, _, first in limited_batches(self.ds, self.batch_size, self.limit, self.names):
            self.seen = first + len(next(iter(inputs.values())))
            self.stats.add(inputs)
            self.progress(self.seen, self.limit, "calibration")
            yield inputs


def _preprocess(source: Path, dest: Path) -> tuple[Path, str]:
    """quant_pre_process, falling back to ONNX shape inference only when symbolic inference fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(dest))
        return dest, "shape inference + optimization"
    except Exception as exc:  # noqa: BLE001 - symbolic shape inference rejects some valid models
        print(
            f"note: quant_pre_process failed ({one_line(exc, 200)}); retrying without symbolic shape inference",
            flush=True,
        )
        quant_pre_process(str(source), str(dest), skip_symbolic_shape=True)
        return dest, "onnx shape inference + optimization (symbolic shape inference failed)"


def _op_types(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


def _stride(batches: int, chunk: int) -> int:
    """The largest divisor of `batches` not above `chunk` (quantize_static needs an exact division)."""
    return max(d for d in range(1, min(chunk, batches) + 1) if batches % d == 0)


def _fit_static_batch(model: Any, batch_size: int, samples: int) -> int:
    """Samples to use so every batch fits: all unless the batch dim is static, then whole batches of it."""
    from stages.data import whole_batches

    weights = {t.name for t in model.graph.initializer}
    fixed = {
        i.type.tensor_type.shape.dim[0].dim_value
        for i in model.graph.input
        if i.name not in weights
        and i.type.tensor_type.shape.dim
        and i.type.tensor_type.shape.dim[0].HasField("dim_value")
    }
    return whole_batches(fixed, batch_size, samples, "export the model with a dynamic batch")
