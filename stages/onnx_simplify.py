"""onnx.simplify: constant folding and graph fusions with onnxsim, dynamic dims kept.

onnxsim (0.4.36 and later) simplifies models with symbolic dims natively. We never
pass `overwrite_input_shapes`: that would bake the opt shape into the graph and
make the batch static. onnxsim's own random check is off (`check_n=0`);
instead the result is compared with the input model at the recipe's opt shape
by ONNX Runtime, like every ONNX stage.
"""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import Field

from pipeline.stage import InputSpec, OutputSpec, Stage, StageContext
from stages.common.params import SelfCheckParams


class OnnxSimplifyParams(SelfCheckParams):
    perform_optimization: bool = Field(True, description="run onnx-optimizer's fusion and elimination passes")
    skip_fuse_bn: bool = Field(False, description="keep BatchNormalization separate from the Conv before it")
    skip_constant_folding: bool = Field(False, description="do not fold constant subgraphs")
    skipped_optimizers: list[str] = Field(
        default_factory=list, description="onnx-optimizer passes to skip, e.g. [fuse_consecutive_transposes]"
    )
    check: bool = Field(True, description="compare the simplified model with the input model at the opt shape")


class OnnxSimplify(Stage[OnnxSimplifyParams]):
    kind = "onnx.simplify"
    version = "1"
    summary = "Simplify an ONNX model with onnxsim, keeping its dynamic dims dynamic"
    inputs = {"model": InputSpec(description="the .onnx file to simplify")}
    outputs = {"model": OutputSpec("model.onnx", description="the simplified model, weights inline")}
    packages = ("onnx", "onnxsim", "onnxruntime")
    extra = "onnx"
    model_fields = ("tensors", "dims")

    def run(self, ctx: StageContext[OnnxSimplifyParams]) -> dict[str, Any]:
        import onnx
        import onnxsim

        from stages.runtimes.onnx import io as onnxio

        p = ctx.params
        source = ctx.path("model")
        original = onnxio.load_onnx(source)
        kwargs: dict[str, Any] = dict(
            check_n=0,
            perform_optimization=p.perform_optimization,
            skip_fuse_bn=p.skip_fuse_bn,
            skip_constant_folding=p.skip_constant_folding,
            skipped_optimizers=list(p.skipped_optimizers) or None,
        )
        # onnxsim 0.8 can prove equivalence with z3 and record the verdict in metadata_props;
        # that depends on whether z3 is installed and how long the solver takes: keep it out.
        if "certify" in inspect.signature(onnxsim.simplify).parameters:
            kwargs["certify"] = False
        simplified, ok = onnxsim.simplify(original, **kwargs)
        if not ok:
            raise ValueError("onnxsim reported that the simplified model is invalid")
        _check_dims_kept(original, simplified)
        onnx.checker.check_model(simplified)
        out = ctx.output("model")
        onnxio.save_onnx(simplified, out)
        summary: dict[str, Any] = {
            "nodes_before": len(original.graph.node),
            "nodes_after": len(simplified.graph.node),
            "size_mb": round(out.stat().st_size / 1e6, 2),
        }
        del original
        if p.check and ctx.model is not None:
            session = onnxio.session_from_onnx(source)
            feeds = onnxio.random_inputs(session, onnxio.input_shapes(ctx.model, "opt"), p.check_seed)
            diffs = onnxio.check_agreement(source, out, feeds, p.check_atol, p.check_rtol)
            summary["check_max_abs"] = max(diffs.values(), default=0.0)
        return summary


def _check_dims_kept(original: Any, simplified: Any) -> None:
    """Fail if simplification made a dynamic input or output dim static (it must not)."""

    def dims(infos: Any) -> dict[str, list[str]]:
        return {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in infos}

    for kind, before, after in (
        ("input", dims(original.graph.input), dims(simplified.graph.input)),
        ("output", dims(original.graph.output), dims(simplified.graph.output)),
    ):
        for name, params in before.items():
            lost = [
                p
                for i, p in enumerate(params)
                if p and (name not in after or i >= len(after[name]) or after[name][i] != p)
            ]
            if lost:
                raise ValueError(f"onnxsim changed the dynamic dims {lost} of {kind} {name!r}")
