"""TensorFlow's side of a conversion: a Keras file as a SavedModel, a SavedModel's serving signature, a TFLite
file's tensors, and each run by TensorFlow itself (the reference a converted model is checked against).

Both converters read a Keras file as a SavedModel that Keras exports (`model.export(format="tf_saved_model")`):
OpenVINO's TF frontend cannot open a .keras/.h5 path, tf2onnx's `from_keras` is written for tf.keras (Keras 2)
models, and converting the in-memory Keras 3 model through OpenVINO traces it again (slower, and its outputs
take internal names such as `functional_1/logits_1/MatMul:0`). One SavedModel, read by both converters, names
inputs by the Keras `Input` names and outputs `output_0`, `output_1`, ..., the same in the IR and the ONNX.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pipeline.errors import one_line
from stages.frontends.ports import Bound, Port

SAVED_MODEL = "saved_model"  # where a Keras file's export goes inside the stage's scratch folder


def import_tensorflow() -> Any:
    """tensorflow, imported with its C++ info logs off (they would fill the stage log)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def load_keras(path: Path) -> Any:
    """A Keras model from a .keras or .h5 file, without its training config; one line when it cannot load."""
    import_tensorflow()
    import keras

    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError... for a file it cannot read
        raise ValueError(f"input model ({path.name}): Keras cannot load it: {one_line(str(exc), 300)}") from None


def export_saved_model(model: Any, directory: Path) -> Path:
    """Keras's own SavedModel export of `model` (its serving signature takes the Input names)."""
    model.export(str(directory), format="tf_saved_model", verbose=False)
    return directory


class Signature:
    """A SavedModel's serving function with the object that owns its variables (they die with it)."""

    def __init__(self, directory: Path):
        tf = import_tensorflow()
        try:
            self.loaded = tf.saved_model.load(str(directory))
        except Exception as exc:
            raise ValueError(
                f"input model ({directory.name}/): TensorFlow cannot load the SavedModel: {one_line(str(exc), 300)}"
            ) from None
        signatures = dict(self.loaded.signatures)
        if "serving_default" in signatures:
            self.key = "serving_default"
        elif len(signatures) == 1:
            self.key = next(iter(signatures))
        else:
            has = ", ".join(sorted(signatures)) or "none"
            raise ValueError(f"input model ({directory.name}/): no serving_default signature (has: {has})")
        self.fn: Any = signatures[self.key]  # a ConcreteFunction

    def ports(self) -> list[Port]:
        """The signature's inputs, by key, sorted (as TensorFlow orders them)."""
        specs = self.fn.structured_input_signature[1]
        return [_port(key, spec.dtype.name, spec.shape) for key, spec in sorted(specs.items())]

    def outputs(self) -> list[str]:
        """The signature's output keys, sorted (the order both converters give the outputs in)."""
        return sorted(self.fn.structured_outputs)

    def run(self, bound: list[Bound], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The signature run by TensorFlow on `feeds` (by the recipe's names); outputs by key."""
        tf = import_tensorflow()
        out = self.fn(**{b.port.name: tf.constant(feeds[b.name]) for b in bound})
        return {key: out[key].numpy() for key in self.outputs()}


def _port(name: str, dtype: str, shape: Any) -> Port:
    dims = shape.as_list() if shape.rank is not None else None
    return Port(name, dtype, tuple(dims) if dims is not None else None)


def run_keras(model: Any, bound: list[Bound], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The Keras model itself on `feeds`, outputs named as its SavedModel export names them (`output_<i>`,
    or a dict's keys)."""
    from keras import ops

    by_port = {b.port.name: feeds[b.name] for b in bound}
    args = [by_port[t.name] for t in model.inputs]
    out = model(args if len(args) > 1 else args[0], training=False)
    if isinstance(out, Mapping):
        return {str(k): ops.convert_to_numpy(v) for k, v in out.items()}
    listed = list(out) if isinstance(out, (list, tuple)) else [out]
    return {f"output_{i}": ops.convert_to_numpy(v) for i, v in enumerate(listed)}


def _interpreter(path: Path) -> Any:
    tf = import_tensorflow()
    with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated": its successor is not installed here
        warnings.simplefilter("ignore")
        try:
            return tf.lite.Interpreter(model_path=str(path), num_threads=1)
        except ValueError as exc:
            raise ValueError(f"input model ({path.name}): TFLite cannot read it: {one_line(str(exc), 300)}") from None


def tflite_ports(path: Path) -> list[Port]:
    """A TFLite file's inputs: -1 in its shape signature (a dim left dynamic) is unknown."""
    details = _interpreter(path).get_input_details()
    return [
        Port(d["name"], np.dtype(d["dtype"]).name, tuple(None if s < 0 else int(s) for s in d["shape_signature"]))
        for d in details
    ]


def tflite_outputs(path: Path) -> list[str]:
    """A TFLite file's output tensor names, in its own order."""
    return [d["name"] for d in _interpreter(path).get_output_details()]


def run_tflite(path: Path, bound: list[Bound], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The TFLite interpreter on `feeds` (resized to their shapes); outputs by tensor name."""
    interpreter = _interpreter(path)
    index = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    for b in bound:
        interpreter.resize_tensor_input(index[b.port.name], list(feeds[b.name].shape), strict=True)
    interpreter.allocate_tensors()
    for b in bound:
        interpreter.set_tensor(index[b.port.name], feeds[b.name])
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()}
