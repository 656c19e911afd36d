"""convert.onnx: a TensorFlow SavedModel, Keras file or TFLite file -> one ONNX file, through tf2onnx.

A SavedModel's serving signature (a Keras file's, through the SavedModel Keras exports: see
stages/frontends/tensorflow.py) is wrapped in a `tf.function` whose input signature is the recipe's
`model.tensors` (named dims left unknown, fixed dims fixed) and converted with `tf2onnx.convert.from_function`;
a TFLite file with `from_tflite`. The ONNX inputs take the recipe's names and its dynamic dims the recipe's dim
names (`batch`, as export.onnx writes them); the outputs take `model.outputs` when given, else the
framework's own names (a signature's keys, `output_0`; a TFLite file's tensor names). Doc strings are
stripped and the file is written deterministically, then checked with ONNX Runtime against TensorFlow's own
run (the Keras model itself for a Keras file) on a random input at the opt shape, as export.onnx checks.

PaddlePaddle -> ONNX is left out: paddle2onnx (2.1) pins onnx<=1.17, below this project's onnx, so it cannot
share the environment; convert.openvino reads Paddle models through OpenVINO's own frontend.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from pipeline.errors import one_line
from pipeline.stage import InputSpec, OutputSpec, Stage, StageContext, installed_version
from stages.common.params import SelfCheckParams
from stages.frontends import formats
from stages.frontends.ports import Bound, align, bind_inputs, feeds_at, output_names

if TYPE_CHECKING:
    import numpy as np
    import onnx

PADDLE_LEFT_OUT = (
    "PaddlePaddle -> ONNX is not available (paddle2onnx pins onnx<=1.17, older than this project's onnx); "
    "use convert.openvino for Paddle models"
)


class ConvertOnnxParams(SelfCheckParams):
    opset: int = Field(17, ge=9, le=18, description="ONNX opset of the default domain (tf2onnx 1.17 goes up to 18)")
    check: bool = Field(
        True, description="compare ONNX Runtime with TensorFlow's own run on a random input at the opt shape"
    )


class ConvertOnnx(Stage[ConvertOnnxParams]):
    kind = "convert.onnx"
    version = "1"
    summary = "Convert a TensorFlow SavedModel, Keras or TFLite model to ONNX with tf2onnx, checked with ONNX Runtime"
    inputs = {
        "model": InputSpec(description="a TensorFlow SavedModel directory, a Keras .keras/.h5 file or a .tflite file")
    }
    outputs = {"model": OutputSpec("model.onnx", description="the converted model, weights inline")}
    own_process = True  # TensorFlow breaks torch's triton and paddle loaded after it in one process
    packages = ("tf2onnx", "onnx", "onnxruntime")
    extra = "tensorflow,onnx"
    model_fields = ("tensors", "dims", "outputs")

    def unmet(self, params: ConvertOnnxParams | None = None) -> str | None:
        """tf2onnx and ONNX Runtime, and TensorFlow (either distribution: tensorflow or tensorflow-cpu)."""
        return super().unmet(params) or formats.missing_framework("tensorflow")

    def toolchain(self, params: ConvertOnnxParams | None = None) -> dict[str, str]:
        return {**super().toolchain(params), **formats.framework_versions(("tensorflow",))}

    def run(self, ctx: StageContext[ConvertOnnxParams]) -> dict[str, Any]:
        from stages.frontends import tensorflow as tfe
        from stages.runtimes.onnx import io as onnxio

        p = ctx.params
        source = formats.detect(ctx.path("model"))
        if source.framework == "paddle":
            raise ValueError(f"input model ({source.path.name}): {PADDLE_LEFT_OUT}")
        scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=ctx.outdir))
        try:
            started = time.perf_counter()
            keras_model = None
            if source.format == "tflite":
                ports, own_outputs, signature = tfe.tflite_ports(source.path), tfe.tflite_outputs(source.path), None
            else:
                saved = source.path
                if source.format == "keras":
                    keras_model = tfe.load_keras(source.path)
                    saved = tfe.export_saved_model(keras_model, scratch / tfe.SAVED_MODEL)
                signature = tfe.Signature(saved)
                ports, own_outputs = signature.ports(), signature.outputs()
            bound = bind_inputs(ports, ctx.model)
            final = output_names(own_outputs, ctx.model)
            if signature is not None:
                proto = _from_signature(signature, bound, own_outputs, p.opset)
            else:
                proto = _from_tflite(source.path, p.opset)
            converted_inputs = [b.name if signature is not None else b.port.name for b in bound]
            canonical_generated_names(proto)
            _rename(proto, converted_inputs, [b.name for b in bound], "input")
            _rename(proto, [o.name for o in proto.graph.output], final, "output")
            _name_dims(proto, bound)
            seconds = time.perf_counter() - started
            onnxio.strip_debug_info(proto)
            out = onnxio.save_onnx(proto, ctx.output("model"))
            summary: dict[str, Any] = {
                "source": source.describe(),
                "format": source.format,
                "opset": p.opset,
                "convert_s": round(seconds, 2),
                "size_mb": round(out.stat().st_size / 1e6, 3),
                "tf2onnx": installed_version("tf2onnx"),
            }
            if p.check:
                feeds = feeds_at(bound, p.check_seed)
                if signature is None:
                    reference = tfe.run_tflite(source.path, bound, feeds)
                elif keras_model is not None:
                    reference = tfe.run_keras(keras_model, bound, feeds)
                else:
                    reference = signature.run(bound, feeds)
                own = [{name} for name in own_outputs]
                summary["check_max_abs"] = _check(out, feeds, align(reference, own, final), p)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return summary


def _from_signature(signature: Any, bound: list[Bound], outputs: list[str], opset: int) -> "onnx.ModelProto":
    """tf2onnx on the serving signature, called with the recipe's input signature; outputs in `outputs`' order."""
    import tf2onnx

    from stages.frontends.tensorflow import import_tensorflow

    tf = import_tensorflow()
    specs = [tf.TensorSpec(b.shape_or_none(), b.port.dtype, name=b.name) for b in bound]
    fn = signature.fn

    @tf.function(input_signature=specs)
    def call(*args: Any) -> list[Any]:
        result = fn(**{b.port.name: a for b, a in zip(bound, args)})
        return [result[key] for key in outputs]

    try:
        proto, _ = tf2onnx.convert.from_function(call, input_signature=specs, opset=opset)
    except Exception as exc:  # tf2onnx raises whatever its handlers hit (ValueError, KeyError, RuntimeError)
        raise ValueError(f"tf2onnx cannot convert the model: {one_line(exc, 300)}") from None
    return proto


def _from_tflite(path: Path, opset: int) -> "onnx.ModelProto":
    import warnings

    import tf2onnx

    try:
        with warnings.catch_warnings():  # tf2onnx opens the file with tf.lite.Interpreter, deprecated
            warnings.simplefilter("ignore")
            proto, _ = tf2onnx.convert.from_tflite(str(path), opset=opset)
    except Exception as exc:  # as above
        raise ValueError(f"input model ({path.name}): tf2onnx cannot convert it: {one_line(exc, 300)}") from None
    return proto


_GENERATED = re.compile(r"__(\d+)(?=(:\d+)?$)")


def canonical_generated_names(proto: "onnx.ModelProto") -> None:
    """Number the names tf2onnx generates (`Transpose__26`, `convolution__6:0`, dims `unk__37`) in graph order.

    tf2onnx draws those numbers from a process-wide counter (`tf2onnx.utils.INTERNAL_NAME`) that also moves on
    its first use in a process: a worker that converts a second model, or the same one again, would name the
    nodes otherwise, and the same model would give other bytes (no early cutoff, no shared cache hit). Each
    distinct number maps to one new number everywhere it appears, so references stay intact.
    """
    numbers: dict[str, str] = {}

    def names(graph: Any) -> Any:  # nodes first: their order is the graph's; tf2onnx orders initializers by name
        yield from graph.input
        for node in graph.node:
            yield node
            for attr in node.attribute:
                for sub in (attr.g, *attr.graphs) if attr.HasField("g") or attr.graphs else ():
                    yield from names(sub)
        yield from graph.output
        yield from graph.initializer
        yield from graph.value_info

    # tf2onnx's generated constants (`const_axes__9`) are shared between nodes that need the same value, under
    # whichever name came first: their whole name is made here, in the order the nodes use them
    constants = {t.name for t in proto.graph.initializer if _GENERATED.search(t.name)}

    def renumber(name: str) -> str:
        if name in constants:
            return "const__" + numbers.setdefault(name, str(len(numbers) + 1))
        return _GENERATED.sub(lambda m: "__" + numbers.setdefault(m.group(1), str(len(numbers) + 1)), name)

    for item in names(proto.graph):
        item.name = renumber(item.name)
        if hasattr(item, "op_type"):  # a node: its inputs and outputs name values
            item.input[:] = [renumber(n) for n in item.input]
            item.output[:] = [renumber(n) for n in item.output]
        elif hasattr(item, "type") and item.type.HasField("tensor_type"):  # a value: its unknown dims (`unk__37`)
            for dim in item.type.tensor_type.shape.dim:
                if dim.HasField("dim_param"):
                    dim.dim_param = renumber(dim.dim_param)
    initializers = sorted(proto.graph.initializer, key=lambda t: t.name)  # in the order of the new names
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(initializers)


def _rename(proto: "onnx.ModelProto", old: list[str], new: list[str], what: str) -> None:
    """Rename graph inputs or outputs (`what`) old[i] -> new[i] everywhere they are used or made."""
    graph = proto.graph
    ports = graph.input if what == "input" else graph.output
    have = [v.name for v in ports if v.name not in {i.name for i in graph.initializer}]
    if sorted(have) != sorted(old):
        raise ValueError(f"tf2onnx gave the {what}s {have}, expected {old}")
    mapping = {o: n for o, n in zip(old, new) if o != n}
    if not mapping:
        return
    taken = {v.name for v in (*graph.input, *graph.output, *graph.value_info)} | {
        o for n in graph.node for o in n.output
    }
    clash = sorted(n for n in mapping.values() if n in taken and n not in mapping)
    if clash:
        raise ValueError(f"cannot name the {what} {clash[0]!r}: the converted graph already uses that name")
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = mapping.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def _name_dims(proto: "onnx.ModelProto", bound: list[Bound]) -> None:
    """The recipe's dim names on the inputs' dynamic dims (tf2onnx calls them unk__N)."""
    by_name = {v.name: v for v in proto.graph.input}
    for b in bound:
        dims = by_name[b.name].type.tensor_type.shape.dim
        for axis, name in b.dim_names().items():
            if axis < len(dims):
                dims[axis].dim_param = name


def _check(
    path: Path, feeds: dict[str, "np.ndarray"], reference: dict[str, "np.ndarray"], p: ConvertOnnxParams
) -> float:
    """ONNX Runtime vs the framework at the opt shape; ValueError naming the output that disagrees."""
    from stages.runtimes.onnx import io as onnxio

    got = onnxio.run_onnx(onnxio.session_from_onnx(path), feeds)
    diffs = onnxio.compare_outputs(reference, got, p.check_atol, p.check_rtol)
    return float(max(diffs.values(), default=0.0))
