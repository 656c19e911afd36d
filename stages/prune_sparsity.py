"""prune.sparsity: an ONNX model -> the same model with its MatMul/Gemm/Conv weights pruned to 2:4 sparsity.

In every group of 4 consecutive weights along a layer's input (reduction)
dimension the 2 smallest |w| become zero: the pattern TensorRT's sparse kernels
need (`build.tensorrt` with `sparse_weights: true`) and that OpenVINO's CPU
sparse-weight decompression can pack (`build.openvino`'s
`sparse_weights_decompression_rate`, AMX int8 only). Which axis that is per op
(Conv along C for each (k, r, s), MatMul along K of B, Gemm by transB) and the
verifier live in `runtimes.onnx.sparsity`.

Method: post-training magnitude pruning on the ONNX graph. It needs nothing but
the ONNX file, so it prunes a model from any framework (torch, Keras, TFLite,
Paddle converted to ONNX), is deterministic (same input, same bytes) and adds
no dependency. The calibration-based alternative, SparseGPT in NVIDIA ModelOpt
(`modelopt.torch.sparsity.sparsify(model, "sparsegpt", ...)`), works on a torch
module with calibration batches, so it would be a stage before export.onnx,
for torch models only. It ran here on CPU in a scratch environment (0.47.0,
after installing huggingface_hub, which 0.47 imports but does not declare).

Layers are skipped, and reported with the reason in the summary and in
`sparsity.json`, when their input dim is not a multiple of 4 (a first conv
on 1 or 3 channels), their weight is not a constant initializer, it has fewer
than `min_size` elements, a node-name pattern in `exclude` matches, or the
initializer also feeds a node that is not one of the pruned layers. The output
is checked: every pruned weight is 2:4 by the verifier, the model passes the
ONNX checker and runs in ONNX Runtime, compared with the dense input on a seeded
input at the opt shape (figures reported; `check_min_cosine` gates). Accuracy
is judged downstream by validate against the dense reference.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from pipeline.stage import InputSpec, OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    from stages.runtimes.onnx.sparsity import WeightSite

OpType = Literal["MatMul", "Gemm", "Conv"]
OP_TYPES: tuple[OpType, ...] = ("MatMul", "Gemm", "Conv")


class PruneSparsityParams(Params):
    op_types: list[OpType] = Field(
        default_factory=lambda: list(OP_TYPES), description="op types whose weights are pruned"
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="regular expressions matched (in full) against node names: those layers stay dense; "
        "a pattern that matches no MatMul/Gemm/Conv node is an error",
    )
    min_size: int = Field(0, ge=0, description="weights with fewer elements stay dense")
    check: bool = Field(True, description="run the pruned model in ONNX Runtime and compare it with the dense input")
    check_seed: int = Field(0, description="seed of the check's random input (at the opt shape)")
    check_min_cosine: float | None = Field(
        None, ge=-1, le=1, description="fail below this cosine similarity to the dense model (None: report only)"
    )

    @field_validator("exclude")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"exclude pattern {pattern!r} is not a regular expression: {exc}") from None
        return v

    @field_validator("op_types")
    @classmethod
    def _some_ops(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("op_types is empty: nothing would be pruned")
        return sorted(set(v), key=v.index)


class PruneSparsity(Stage[PruneSparsityParams]):
    kind = "prune.sparsity"
    version = "1"
    summary = "Prune MatMul/Gemm/Conv weights to 2:4 structured sparsity (magnitude, post-training)"
    inputs = {"model": InputSpec(description="the .onnx file (float weights, or Q/DQ weights)")}
    outputs = {
        "model": OutputSpec("model.onnx", description="the pruned model"),
        "report": OutputSpec(
            "sparsity.json", description="per layer: op, shape, input axis, pruned or skipped (why), zero fraction"
        ),
    }
    packages = ("onnx", "onnxruntime")
    extra = "onnx"
    model_fields = ("tensors", "dims")

    def run(self, ctx: StageContext[PruneSparsityParams]) -> dict[str, Any]:
        import onnx

        from stages.runtimes.onnx import check as onnx_check
        from stages.runtimes.onnx import io as onnxio
        from stages.runtimes.onnx import sparsity

        p = ctx.params
        source = ctx.path("model")
        model = onnxio.load_onnx(source)
        sites = sparsity.weight_sites(model, p.op_types)
        if not sites:
            raise ValueError(f"{source.name} has no {'/'.join(p.op_types)} node: nothing to prune")
        unmatched = [x for x in p.exclude if not any(re.fullmatch(x, s.node) for s in sites)]
        if unmatched:
            raise ValueError(
                f"exclude patterns {unmatched} match no {'/'.join(p.op_types)} node "
                f"(nodes: {', '.join(s.node for s in sites[:8])}{' ...' if len(sites) > 8 else ''})"
            )
        before = {e["node"]: e.get("zeros") for e in sparsity.verify(model, p.op_types)}
        reasons = _skip_reasons(model, sites, p)
        chosen = [s for s in sites if s.node not in reasons]
        zeros = sparsity.prune_sites(model, chosen) if chosen else {}
        onnx.checker.check_model(model)
        pruned_names = sorted({s.weight for s in chosen if s.weight is not None})
        sparsity.require_2_4(model, pruned_names)  # the verifier, on the bytes about to ship
        out = ctx.output("model")
        onnxio.save_onnx(model, out)
        layers = [_layer(s, reasons.get(s.node), before[s.node], zeros) for s in sites]
        del model
        check: dict[str, Any] = {}
        if p.check and ctx.model is not None and ctx.model.tensors:
            session = onnxio.session_from_onnx(source)
            feeds = onnxio.random_inputs(session, onnxio.input_shapes(ctx.model, "opt"), p.check_seed)
            try:
                check = onnx_check.compare_onnx(source, out, feeds, None, p.check_min_cosine)
            except ValueError as exc:
                raise ValueError(f"the pruned model against the dense one: {exc}") from None
        totals = _totals(layers)
        report = {"settings": p.model_dump(mode="json"), "layers": layers, "totals": totals, "check": check}
        ctx.output("report").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        if not chosen:
            ctx.warn("no layer was pruned (every one is skipped: see sparsity.json); the model is unchanged")
        skipped = [f"{e['node']} ({e['reason']})" for e in layers if e["status"] == "skipped"]
        summary: dict[str, Any] = {
            "pruned": totals["pruned_layers"],
            "skipped": len(skipped),
            "pruned_weight_share": totals["pruned_weight_share"],
            "zeros": totals["zeros"],
        }
        if skipped:
            summary["skipped_layers"] = "; ".join(skipped)
        summary.update({f"check_{k}": round(v, 6) for k, v in onnx_check.worst(check).items()})
        return summary


def _skip_reasons(model: Any, sites: list["WeightSite"], p: PruneSparsityParams) -> dict[str, str]:
    """Node -> why its weight stays dense (absent: it is pruned)."""
    from stages.runtimes.onnx import sparsity

    reasons: dict[str, str] = {}
    for s in sites:
        pattern = next((x for x in p.exclude if re.fullmatch(x, s.node)), None)
        if s.reason is not None:
            reasons[s.node] = s.reason
        elif pattern is not None:
            reasons[s.node] = f"excluded by {pattern!r}"
        elif s.size < p.min_size:
            reasons[s.node] = f"{s.size} weights < min_size {p.min_size}"
    candidates = [s for s in sites if s.node not in reasons]
    foreign = sparsity.foreign_users(model, candidates)
    axes: dict[str, set[int]] = {}
    dequantizers: dict[str, set[str | None]] = {}
    for s in candidates:
        axes.setdefault(s.weight or "", set()).add(s.axis)
        dequantizers.setdefault(s.weight or "", set()).add(s.dequantize)
    for s in candidates:
        if s.weight in foreign:
            reasons[s.node] = f"its weight {s.weight} also feeds {foreign[s.weight]}"
        elif len(axes[s.weight or ""]) > 1:
            reasons[s.node] = f"its weight {s.weight} is shared with a layer reading it along another axis"
        elif len(dequantizers[s.weight or ""]) > 1:  # each DQ's zero point and scale would rank it otherwise
            reasons[s.node] = f"its weight {s.weight} reaches its layers through different DequantizeLinear nodes"
    # A shared weight is pruned for all its layers or for none: one skipped layer keeps it dense for the others.
    kept = {s.weight for s in sites if s.node in reasons and s.weight is not None}
    for s in sites:
        if s.node not in reasons and s.weight in kept:
            reasons[s.node] = f"its weight {s.weight} is shared with a layer that stays dense"
    return reasons


def _layer(site: "WeightSite", reason: str | None, zeros_before: float | None, zeros: dict[str, float]) -> dict:
    entry: dict[str, Any] = {
        "node": site.node,
        "op": site.op,
        "weight": site.weight,
        "shape": list(site.shape),
        "size": site.size,
        "status": "skipped" if reason else "pruned",
        "zeros_before": zeros_before,
        "zeros": zeros.get(site.weight or "", zeros_before) if not reason else zeros_before,
    }
    if site.weight is not None:
        entry.update(axis=site.axis, via=list(site.via))
    if reason:
        entry["reason"] = reason
    return entry


def _totals(layers: list[dict]) -> dict[str, Any]:
    """Counts and shares over distinct weights: how much of the layers' weight is now 2:4."""
    seen: dict[str, dict] = {}
    for e in layers:
        if e["weight"] is not None:
            seen.setdefault(e["weight"], e)
    size = sum(e["size"] for e in seen.values())
    pruned = [e for e in seen.values() if e["status"] == "pruned"]
    pruned_size = sum(e["size"] for e in pruned)
    zero_count = sum(e["size"] * (e["zeros"] or 0.0) for e in seen.values())
    return {
        "layers": len(layers),
        "pruned_layers": sum(e["status"] == "pruned" for e in layers),
        "skipped_layers": sum(e["status"] == "skipped" for e in layers),
        "weights": size,
        "pruned_weights": pruned_size,
        "pruned_weight_share": round(pruned_size / size, 4) if size else 0.0,
        "zeros": round(zero_count / size, 4) if size else 0.0,
    }
