"""export.onnx: the recipe's torch model -> one self-contained, reproducible ONNX file.

The model is rebuilt from code (factory + seed + optional checkpoint), exported
with the recipe's named dynamic dims, stripped of the exporter's debug
metadata (source paths and line numbers) so that a comment edit or another
checkout directory gives the same bytes, and checked against torch with ONNX
Runtime before the stage succeeds.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from pipeline.errors import one_line
from pipeline.schema import ModelSpec
from pipeline.stage import (
    InputSpec,
    KeyContext,
    NameNotDefined,
    OutputSpec,
    RecipeValueError,
    Stage,
    StageContext,
)
from stages.common.params import SelfCheckParams

if TYPE_CHECKING:
    import onnx
    import torch


class ExportOnnxParams(SelfCheckParams):
    opset: int = Field(20, ge=7, description="ONNX opset of the default domain")
    dynamo: bool = Field(
        True,
        description="use torch.onnx.export(dynamo=True) (torch.export + onnxscript); "
        "false = the deprecated TorchScript exporter",
    )
    keep_debug_metadata: bool = Field(
        False,
        description="keep the exporter's doc strings and node metadata "
        "(source paths, line numbers); makes the bytes checkout-dependent",
    )
    check: bool = Field(True, description="compare ONNX Runtime against torch on a random input at the opt shape")


class ExportOnnx(Stage[ExportOnnxParams]):
    kind = "export.onnx"
    version = "1"
    summary = "Export the recipe's torch model to ONNX with named dynamic dims, deterministically"
    inputs = {
        "checkpoint": InputSpec(
            optional=True, description="a state_dict from another stage (e.g. training); overrides model.checkpoint"
        )
    }
    outputs = {"model": OutputSpec("model.onnx", description="the exported model, weights inline")}
    packages = ("torch", "onnx", "onnxscript", "onnxruntime")
    extra = "torch,onnx"
    # Everything export reads from `model:`; not `roles`, which only validation and accuracy control read.
    model_fields = tuple(f for f in ModelSpec.model_fields if f != "roles")

    def fingerprint(self, params: ExportOnnxParams, model: "ModelSpec | None", keys: KeyContext) -> dict[str, Any]:
        """The factory's code and the checkpoint's bytes: what the export reads besides params."""
        if model is None or model.factory is None:
            return {}
        try:
            code = keys.code_digest(model.factory, model.source)
        except (OSError, ImportError, NameNotDefined) as exc:
            field = "source" if model.source and not (keys.recipe_dir / model.source).exists() else "factory"
            raise RecipeValueError(("model", field), one_line(exc)) from None
        try:
            checkpoint = keys.file_digest(keys.recipe_dir / model.checkpoint) if model.checkpoint else None
        except OSError as exc:
            raise RecipeValueError(
                ("model", "checkpoint"), f"cannot read checkpoint {model.checkpoint!r}: {exc.strerror or exc}"
            ) from None
        return {"factory_code": code, "checkpoint": checkpoint}

    def run(self, ctx: StageContext[ExportOnnxParams]) -> dict[str, Any]:
        from stages.runtimes import pytorch as models
        from stages.runtimes.onnx import io as onnxio

        p = ctx.params
        model = ctx.model
        if model is None or not model.tensors:
            raise ValueError("export.onnx needs model.tensors (the inputs' shapes) in the recipe")
        module = models.module_from_spec(model, ctx.recipe_dir, ctx.optional_path("checkpoint"))
        out = ctx.output("model")
        started = time.perf_counter()
        proto = (_export_dynamo if p.dynamo else _export_torchscript)(module, model, p.opset, ctx.outdir)
        seconds = time.perf_counter() - started
        _restore_dim_names(proto, model)
        if model.outputs is not None and [o.name for o in proto.graph.output] != model.outputs:
            raise ValueError(
                f"exported outputs {[o.name for o in proto.graph.output]} != model.outputs {model.outputs}"
            )
        if not p.keep_debug_metadata:
            onnxio.strip_debug_info(proto)
        onnxio.save_onnx(proto, out)
        summary: dict[str, Any] = {
            "opset": p.opset,
            "exporter": "dynamo" if p.dynamo else "torchscript",
            "export_s": round(seconds, 2),
            "size_mb": round(out.stat().st_size / 1e6, 2),
        }
        if p.check:
            summary["check_max_abs"] = _check(module, model, out, p)
        return summary


def _dim_ident(name: str) -> str:
    """torch.export.Dim names must be identifiers; recipe dim names may contain '-'."""
    ident = re.sub(r"\W", "_", name)
    return ident if ident.isidentifier() else f"d_{ident}"


def _trace_size(model: "ModelSpec", dim: int | str) -> int:
    """Trace at the opt size, but never at 1 when the dim is dynamic: exporters specialise size-1 dims."""
    if isinstance(dim, int):
        return dim
    r = model.dims[dim]
    return 2 if r.opt < 2 <= r.max else r.opt


def _is_dynamic(model: "ModelSpec", dim: int | str) -> bool:
    return isinstance(dim, str) and model.dims[dim].min != model.dims[dim].max


def _example_args(model: "ModelSpec") -> tuple["torch.Tensor", ...]:
    import torch

    from stages.runtimes.pytorch import torch_dtype

    gen = torch.Generator().manual_seed(0)
    args = []
    for spec in model.tensors.values():
        shape = [_trace_size(model, d) for d in spec.shape]
        dtype = torch_dtype(spec.dtype)
        if dtype.is_floating_point:
            args.append(torch.randn(shape, generator=gen).to(dtype))
        else:
            args.append(torch.randint(0, 2, shape, generator=gen).to(dtype))
    return tuple(args)


def _export_dynamo(module: "torch.nn.Module", model: "ModelSpec", opset: int, workdir: Path) -> "onnx.ModelProto":
    import torch

    dims = {
        name: torch.export.Dim(_dim_ident(name), min=r.min, max=r.max)
        for name, r in model.dims.items()
        if r.min != r.max
    }
    per_input = tuple(
        {i: dims[d] for i, d in enumerate(spec.shape) if isinstance(d, str) and _is_dynamic(model, d)} or None
        for spec in model.tensors.values()
    )
    dynamic_shapes = per_input if any(per_input) else None
    with warnings.catch_warnings():  # a dim shared by two inputs is expected, not news
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints", category=UserWarning)
        program = torch.onnx.export(
            module,
            _example_args(model),
            None,
            dynamo=True,
            verbose=False,
            opset_version=opset,
            input_names=list(model.tensors),
            output_names=model.outputs,
            dynamic_shapes=dynamic_shapes,
        )
    assert program is not None  # with no file to write (f=None), the dynamo exporter returns its program
    return program.model_proto  # weights inline, never external data


def _export_torchscript(module: "torch.nn.Module", model: "ModelSpec", opset: int, workdir: Path) -> "onnx.ModelProto":
    import torch

    from stages.runtimes.onnx.io import load_onnx

    dynamic_axes = {
        name: {i: d for i, d in enumerate(spec.shape) if isinstance(d, str) and _is_dynamic(model, d)}
        for name, spec in model.tensors.items()
    }
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=workdir))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                _example_args(model),
                str(tmp / "model.onnx"),
                dynamo=False,
                opset_version=opset,
                input_names=list(model.tensors),
                output_names=model.outputs,
                dynamic_axes={k: v for k, v in dynamic_axes.items() if v},
                do_constant_folding=True,
            )
        return load_onnx(tmp / "model.onnx")  # pulls any external data inline
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _restore_dim_names(proto: "onnx.ModelProto", model: "ModelSpec") -> None:
    """Put the recipe's own dim names back where `_dim_ident` had to change them."""
    renames = {_dim_ident(n): n for n in model.dims if _dim_ident(n) != n}
    if not renames:
        return
    graph = proto.graph
    for info in (*graph.input, *graph.output, *graph.value_info):
        for dim in info.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def _check(module: "torch.nn.Module", model: "ModelSpec", path: Path, p: ExportOnnxParams) -> float:
    """ONNX Runtime vs torch at the opt shape; ValueError naming the output that disagrees."""
    from stages.runtimes import pytorch as models
    from stages.runtimes.onnx import io as onnxio

    feeds = models.numpy_inputs(model, onnxio.input_shapes(model, "opt"), p.check_seed)
    expected = models.run_torch(module, model, feeds)
    session = onnxio.session_from_onnx(path)
    got = onnxio.run_onnx(session, feeds)
    if len(got) != len(expected):
        raise ValueError(f"ONNX model has {len(got)} outputs, torch returned {len(expected)}")
    reference = dict(zip(got, expected))
    diffs = onnxio.compare_outputs(reference, got, p.check_atol, p.check_rtol)
    return max(diffs.values(), default=0.0)
