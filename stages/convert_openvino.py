"""convert.openvino: a TensorFlow SavedModel, Keras file, TFLite file or PaddlePaddle model -> an OpenVINO IR.

OpenVINO reads these through its own frontends (`openvino.convert_model`): a SavedModel directory, a .tflite
file and a Paddle .pdmodel natively, a Keras file as the SavedModel Keras exports from it
(stages/frontends/tensorflow.py says why). The IR's inputs take the recipe's `model.tensors` names and its
unknown dims the recipe's `dims` (ranges, as build.openvino's `shapes: dynamic`); `model.outputs`, when given,
renames the outputs in the converter's order. The result is the directory build.openvino and quantize.nncf
read (model.xml + model.bin, float weights as they came: compression is build.openvino's choice).

`check` runs the IR (FP32) and the framework itself (TensorFlow, Keras, the TFLite interpreter, Paddle
Inference) on one seeded random input at the opt shape and fails the stage when they disagree. Paddle 3's
PIR format (.json) is not read by every OpenVINO release; where it is not, the error says to save the legacy
program (.pdmodel). The key holds the input's files (a Paddle model file's weights through the discovered
inputs, see stages/frontends/formats.py), the openvino version and the frameworks' versions.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from pipeline.errors import one_line
from pipeline.stage import InputSpec, OutputSpec, Stage, StageContext, installed_version
from stages.common.params import SelfCheckParams
from stages.frontends import formats
from stages.frontends.formats import ModelSource
from stages.frontends.ports import Bound, Port, align, bind_inputs, feeds_at, output_names
from stages.runtimes.openvino.io import reshape_inputs

if TYPE_CHECKING:
    import numpy as np
    import openvino as ov


class ConvertOpenvinoParams(SelfCheckParams):
    check: bool = Field(
        True, description="compare the IR (FP32) with the framework's own run on a random input at the opt shape"
    )


class ConvertOpenvino(Stage[ConvertOpenvinoParams]):
    kind = "convert.openvino"
    version = "1"
    summary = "Convert a TensorFlow/Keras/TFLite/PaddlePaddle model to an OpenVINO IR with OpenVINO's frontends"
    inputs = {"model": InputSpec(description=formats.EXPECTED)}
    outputs = {"model": OutputSpec("model", is_dir=True, description="model.xml and model.bin")}
    own_process = True  # TensorFlow breaks torch's triton and paddle loaded after it in one process
    packages = ("openvino",)
    extra = "openvino"
    model_fields = ("tensors", "dims", "outputs")

    def toolchain(self, params: ConvertOpenvinoParams | None = None) -> dict[str, str]:
        """openvino, and the frameworks whose models it reads (they load the Keras file and run the check)."""
        return {**super().toolchain(params), **formats.framework_versions(("tensorflow", "paddle"))}

    def run(self, ctx: StageContext[ConvertOpenvinoParams]) -> dict[str, Any]:
        import openvino as ov

        from stages.runtimes.openvino import io as ovio

        p = ctx.params
        source = formats.detect(ctx.path("model"))
        needs_framework = source.format == "keras" or p.check
        problem = formats.missing_framework(source.framework) if needs_framework else None
        if problem:
            raise ValueError(f"input model ({source.path.name}): reading a {source.describe()} {problem}")
        summary: dict[str, Any] = {"source": source.describe(), "format": source.format}
        scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=ctx.outdir))
        try:
            if source.format == "paddle":
                source = formats.stage_paddle(source, scratch / "paddle")
            keras_model = None
            readable = source.path
            if source.format == "keras":
                from stages.frontends import tensorflow as tfe

                keras_model = tfe.load_keras(source.path)
                readable = tfe.export_saved_model(keras_model, scratch / tfe.SAVED_MODEL)
            model = _convert(ov, readable, source)
            bound = bind_inputs([_port(i) for i in model.inputs], ctx.model)
            _reshape(ov, model, bound)
            for b in bound:
                model.input(b.port.name).get_tensor().set_names({b.name})
            own = [set(o.get_names()) for o in model.outputs]
            final = output_names([o.get_any_name() for o in model.outputs], ctx.model)
            if ctx.model is not None and ctx.model.outputs is not None:
                for port, name in zip(model.outputs, final):
                    port.get_tensor().set_names({name})
            if p.check:
                reference = _reference(source, readable, keras_model, bound, feeds_at(bound, p.check_seed))
                summary["check_max_abs"] = _check(ov, model, bound, align(reference, own, final), final, p)
            xml = ovio.save_ir(model, ctx.output("model"), compress_to_fp16=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        summary["inputs"] = {b.name: _shape_text(b) for b in bound}
        summary["outputs"] = final
        summary["size_mb"] = round(xml.with_suffix(".bin").stat().st_size / 1e6, 3)
        summary["openvino"] = installed_version("openvino")
        return summary


def _convert(ov: Any, readable: Path, source: ModelSource) -> "ov.Model":
    """`ov.convert_model` on what OpenVINO's frontends read; one line naming the input when it cannot."""
    try:
        return ov.convert_model(str(readable))
    except Exception as exc:  # ovc raises its own Error, OpenVINO's frontends RuntimeError/GeneralFailure
        if source.format == "paddle" and source.path.suffix == ".json":
            raise ValueError(
                f"input model ({source.path.name}): OpenVINO {installed_version('openvino')} cannot read Paddle's "
                "PIR format (.json); save the legacy program: run paddle.jit.save with FLAGS_enable_pir_api=0 "
                "(it writes a .pdmodel)"
            ) from None
        raise ValueError(
            f"input model ({source.path.name}): OpenVINO cannot convert the {source.describe()}: "
            f"{one_line(str(exc), 300)}"
        ) from None


def _port(output: Any) -> Port:
    """An ov.Model input as a Port (its first name; a dynamic dim or rank is unknown)."""
    shape = output.get_partial_shape()
    dims = None if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
    return Port(output.get_any_name(), output.get_element_type().to_dtype().name, dims)


def _reshape(ov: Any, model: "ov.Model", bound: list[Bound]) -> None:
    """Every input to the recipe's dims: fixed ints, and ranges [min..max] for its named dims."""
    shapes = {}
    for b in bound:
        dims = [ov.Dimension(d) if isinstance(d, int) else ov.Dimension(d[1], d[2]) for d in b.dims]
        shapes[b.port.name] = ov.PartialShape(dims)
    reshape_inputs(model, shapes)


def _reference(
    source: ModelSource, readable: Path, keras_model: Any, bound: list[Bound], feeds: dict[str, "np.ndarray"]
) -> dict[str, "np.ndarray"]:
    """The framework's own outputs on `feeds`, by its own output names."""
    if source.format == "paddle":
        from stages.frontends.paddle import run_paddle

        return run_paddle(source, bound, feeds)
    from stages.frontends import tensorflow as tfe

    if source.format == "tflite":
        return tfe.run_tflite(source.path, bound, feeds)
    if keras_model is not None:
        return tfe.run_keras(keras_model, bound, feeds)
    return tfe.Signature(readable).run(bound, feeds)


def _check(
    ov: Any,
    model: "ov.Model",
    bound: list[Bound],
    reference: dict[str, "np.ndarray"],
    final: list[str],
    p: ConvertOpenvinoParams,
) -> float:
    """The IR compiled in FP32 on the CPU against the framework; ValueError naming the output that disagrees."""
    from stages.runtimes.onnx.io import compare_outputs

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2})
    result = compiled(feeds_at(bound, p.check_seed))
    got = {name: result[i] for i, name in enumerate(final)}  # the compiled outputs keep the model's order
    diffs = compare_outputs(reference, got, p.check_atol, p.check_rtol)
    return float(max(diffs.values(), default=0.0))


def _shape_text(b: Bound) -> str:
    return "[" + ",".join(str(d) if isinstance(d, int) else f"{d[0]}:{d[1]}..{d[2]}" for d in b.dims) + "]"
