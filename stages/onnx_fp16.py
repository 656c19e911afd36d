"""onnx.fp16: an FP32 ONNX model -> mixed precision (FP16 with chosen ops and nodes kept in FP32).

TensorRT 11 builds strongly typed networks only: there is no FP16 builder
flag, an engine computes in FP16 exactly where the ONNX is FP16. This stage
makes that ONNX with onnxconverter-common's `float16.convert_float_to_float16`:
float initializers and tensors become FP16, Cast nodes guard the ops kept in
FP32 (the converter's default block list, which holds ops whose FP16 kernels
are missing or inaccurate, plus `keep_op_types` and the nodes in `keep_nodes`),
and with `keep_io_types` the model still takes and returns FP32, so runners
and validation feed it the same arrays as the FP32 model.

Constants outside FP16's range are clamped to +-`max_finite_val`, and nonzero
ones closer to zero than `min_positive_val` are raised to it; the report counts
how many values were touched, since a clamped weight is a silent accuracy bug.
The result is compared with the FP32 input in ONNX Runtime on a seeded input
(ResNet50: max abs difference ~0.02-0.05 on random input, cosine ~1).
"""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    import onnx


class OnnxFp16Params(Params):
    keep_io_types: bool = Field(True, description="inputs and outputs stay FP32 (Casts inside the graph)")
    keep_op_types: list[str] = Field(
        default_factory=list,
        description="op types kept in FP32, in addition to onnxconverter-common's default block list",
    )
    keep_nodes: list[str] = Field(default_factory=list, description="node names kept in FP32")
    min_positive_val: float = Field(1e-7, gt=0, description="nonzero constants smaller in magnitude are raised to this")
    max_finite_val: float = Field(
        65504.0,
        gt=0,
        le=65504.0,
        description="constants larger in magnitude are clamped to this (65504: FP16's largest finite value)",
    )
    check: bool = Field(True, description="compare the FP16 model with the FP32 input in ONNX Runtime")
    check_seed: int = Field(0, description="seed of the check's random input (at the opt shape)")
    check_min_cosine: float | None = Field(
        0.99, ge=-1, le=1, description="fail below this cosine similarity (None: report only)"
    )
    check_max_abs: float | None = Field(
        None, gt=0, description="fail above this max abs difference (None: report only)"
    )

    @model_validator(mode="after")
    def _range(self) -> "OnnxFp16Params":
        if self.min_positive_val >= self.max_finite_val:
            raise ValueError("min_positive_val must be below max_finite_val")
        return self


class OnnxFp16(Stage[OnnxFp16Params]):
    kind = "onnx.fp16"
    version = "1"
    summary = "Convert an FP32 ONNX model to FP16 mixed precision (for strongly typed TensorRT builds)"
    inputs = {"model": InputSpec(description="the FP32 .onnx file")}
    outputs = {
        "model": OutputSpec("model.onnx", description="the mixed-precision model"),
        "report": OutputSpec("fp16.json", description="settings, ops kept in FP32, clamped constants, check"),
    }
    packages = ("onnx", "onnxconverter-common", "onnxruntime")
    extra = "onnx"
    model_fields = ("tensors", "dims")

    def run(self, ctx: StageContext[OnnxFp16Params]) -> dict[str, Any]:
        import onnx
        from onnxconverter_common import float16

        from stages.runtimes.onnx import check as onnx_check
        from stages.runtimes.onnx import io as onnxio

        p = ctx.params
        source = ctx.path("model")
        model = onnxio.load_onnx(source)
        names = {n.name for n in model.graph.node}
        unknown = sorted(set(p.keep_nodes) - names)
        if unknown:
            raise ValueError(f"keep_nodes names nodes the model does not have: {unknown}")
        clamped = _out_of_range(model, p.min_positive_val, p.max_finite_val)
        block_ops = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(p.keep_op_types))
        with warnings.catch_warnings():  # one UserWarning per clamped value; the report counts them instead
            warnings.simplefilter("ignore", UserWarning)
            converted = float16.convert_float_to_float16(
                model,
                min_positive_val=p.min_positive_val,
                max_finite_val=p.max_finite_val,
                keep_io_types=p.keep_io_types,
                op_block_list=block_ops,
                node_block_list=list(p.keep_nodes),
            )
        del model
        onnx.checker.check_model(converted)
        kept = sorted(n.name for n in converted.graph.node if n.op_type in block_ops or n.name in p.keep_nodes)
        fp16_inits = sum(t.data_type == onnx.TensorProto.FLOAT16 for t in converted.graph.initializer)
        casts = sum(n.op_type == "Cast" for n in converted.graph.node)
        out = ctx.output("model")
        onnxio.save_onnx(converted, out)
        del converted
        check: dict[str, Any] = {}
        if p.check and ctx.model is not None and ctx.model.tensors:
            session = onnxio.session_from_onnx(source)
            feeds = onnxio.random_inputs(session, onnxio.input_shapes(ctx.model, "opt"), p.check_seed)
            check = onnx_check.compare_onnx(source, out, feeds, p.check_max_abs, p.check_min_cosine)
        if clamped["too_large"]:
            ctx.warn(
                f"{clamped['too_large']} constant values clamped to +-{p.max_finite_val:g} "
                f"(in {', '.join(clamped['tensors'][:5])}): check the accuracy"
            )
        if clamped["too_small"]:
            print(
                f"note: {clamped['too_small']} tiny nonzero constant values raised to +-{p.min_positive_val:g}",
                flush=True,
            )
        report = {
            "settings": p.model_dump(mode="json"),
            "op_block_list": block_ops,
            "kept_fp32_nodes": kept,
            "fp16_initializers": fp16_inits,
            "casts": casts,
            "clamped": clamped,
            "check": check,
        }
        ctx.output("report").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        return {
            "fp16_initializers": fp16_inits,
            "kept_fp32_nodes": len(kept),
            "casts": casts,
            "clamped_values": clamped["too_large"] + clamped["too_small"],
            "size_mb": round(out.stat().st_size / 1e6, 2),
            **{f"check_{k}": round(v, 6) for k, v in onnx_check.worst(check).items()},
        }


def _out_of_range(model: "onnx.ModelProto", min_positive: float, max_finite: float) -> dict[str, Any]:
    """How many float initializer values the conversion will clamp, and in which tensors."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    large = small = 0
    tensors = []
    for t in model.graph.initializer:
        if t.data_type not in (TensorProto.FLOAT, TensorProto.DOUBLE):
            continue
        a = np.abs(numpy_helper.to_array(t))
        n_large, n_small = int((a > max_finite).sum()), int(((a > 0) & (a < min_positive)).sum())
        if n_large or n_small:
            tensors.append(t.name)
        large, small = large + n_large, small + n_small
    return {"too_large": large, "too_small": small, "tensors": tensors}
