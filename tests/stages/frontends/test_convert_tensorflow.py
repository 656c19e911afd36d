"""convert.onnx and convert.openvino on models TensorFlow builds here: a tf.Module SavedModel with two named
outputs, a Keras CNN saved as .keras and .h5, and a TFLite file. Each converted model (ONNX Runtime, OpenVINO
FP32) is compared with the framework's own output on a random input the stages' self-checks never saw, and
takes the recipe's input names, dim names and ranges."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import run_stage

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow is imported by the fixture, not at collection: after it, importing torch's triton (torch.export)
# crashes the process, so these tests also run last (`loads_tensorflow`, tests/conftest.py).
if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None:
    pytest.skip("tensorflow and tf2onnx are the tensorflow extra", allow_module_level=True)
pytestmark = pytest.mark.loads_tensorflow

from stages.convert_onnx import ConvertOnnx  # noqa: E402
from stages.convert_openvino import ConvertOpenvino  # noqa: E402
from stages.runtimes.onnx.io import run_onnx, session_from_onnx  # noqa: E402

DENSE_SPEC = {"tensors": {"x": {"shape": ["batch", 6]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 16}}}
IMAGE_SPEC = {
    "tensors": {"image": {"shape": ["batch", 8, 8, 1]}},
    "dims": {"batch": {"min": 1, "opt": 4, "max": 16}},
    "outputs": ["logits"],
}


def dense_module(tf: Any) -> Any:
    """y = tanh(x W + b), and its row sums: a SavedModel with two outputs named by its signature."""

    class Dense(tf.Module):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.w = tf.Variable(rng.standard_normal((6, 5)).astype(np.float32))
            self.b = tf.Variable(rng.standard_normal(5).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
        def __call__(self, x: Any) -> dict[str, Any]:
            scores = tf.tanh(tf.matmul(x, self.w) + self.b)
            return {"scores": scores, "total": tf.reduce_sum(scores, axis=1)}

    return Dense()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every model once per module (TensorFlow is slow to start): paths, and the Keras model in memory."""
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("tfmodels")
    module = dense_module(tf)
    tf.saved_model.save(module, str(root / "dense"), signatures=module.__call__.get_concrete_function())
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(keras.layers.BatchNormalization()(x))
    net = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    net.save(root / "net.keras")
    net.save(root / "net.h5")
    net.export(str(root / "exported"), format="tf_saved_model", verbose=False)
    (root / "net.tflite").write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(root / "exported")).convert())
    fixed = tf.function(lambda x: tf.nn.relu(x) * 2.0).get_concrete_function(tf.TensorSpec([1, 6], tf.float32))
    (root / "fixed.tflite").write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([fixed], None).convert())
    return {"root": root, "dense": module, "net": net, "tf": tf, "keras": keras}


def _outputs(kind: type, root: Path, tmp: Path, spec: dict, x: np.ndarray, input_name: str) -> dict[str, np.ndarray]:
    """Convert `root` with `kind` and run the result on `x`: ONNX Runtime for ONNX, OpenVINO FP32 for an IR."""
    summary = run_stage(kind, tmp, inputs={"model": str(root)}, model=spec)
    assert summary["check_max_abs"] < 1e-4  # the stage's own check passed
    if kind is ConvertOnnx:
        return run_onnx(session_from_onnx(tmp / "model.onnx"), {input_name: x})
    import openvino as ov

    compiled = ov.Core().compile_model(str(tmp / "model" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({input_name: x})
    return {port.get_any_name(): result[port] for port in compiled.outputs}


@pytest.mark.parametrize("kind", [ConvertOnnx, ConvertOpenvino])
def test_a_savedmodel_converts_and_matches_tensorflow(models: dict, kind: type, tmp_path: Path) -> None:
    x = np.random.default_rng(7).standard_normal((3, 6)).astype(np.float32)
    expected = {k: v.numpy() for k, v in models["dense"](models["tf"].constant(x)).items()}
    got = _outputs(kind, models["root"] / "dense", tmp_path, DENSE_SPEC, x, "x")
    assert sorted(got) == ["scores", "total"]  # the signature's keys
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)


@pytest.mark.parametrize("file", ["net.keras", "net.h5", "net.tflite"])
@pytest.mark.parametrize("kind", [ConvertOnnx, ConvertOpenvino])
def test_keras_and_tflite_files_convert_and_match_keras(models: dict, kind: type, file: str, tmp_path: Path) -> None:
    x = np.random.default_rng(8).random((5, 8, 8, 1), dtype=np.float32)
    expected = models["keras"].ops.convert_to_numpy(models["net"](x, training=False))
    got = _outputs(kind, models["root"] / file, tmp_path, IMAGE_SPEC, x, "image")
    assert list(got) == ["logits"]  # model.outputs renames the one output
    np.testing.assert_allclose(got["logits"], expected, atol=1e-4)


def test_the_onnx_takes_the_recipe_names_and_dynamic_dims(models: dict, tmp_path: Path) -> None:
    import onnx

    run_stage(ConvertOnnx, tmp_path, inputs={"model": str(models["root"] / "net.tflite")}, model=IMAGE_SPEC)
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    (inp,) = graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "image" and dims == ["batch", 8, 8, 1] and [o.name for o in graph.output] == ["logits"]
    assert all(not node.doc_string for node in graph.node)


def test_the_ir_takes_the_recipe_ranges(models: dict, tmp_path: Path) -> None:
    import openvino as ov

    run_stage(ConvertOpenvino, tmp_path, inputs={"model": str(models["root"] / "net.keras")}, model=IMAGE_SPEC)
    model = ov.Core().read_model(str(tmp_path / "model" / "model.xml"))
    assert model.input(0).get_any_name() == "image" and str(model.input(0).get_partial_shape()) == "[1..16,8,8,1]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the scratch folder is gone


@pytest.mark.parametrize("kind", [ConvertOnnx, ConvertOpenvino])
def test_a_tflite_with_a_fixed_batch_cannot_take_a_batch_range(models: dict, kind: type, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"dim 0 is fixed at 1 in the model \[1,6\], the recipe asks batch \(1..16\)"):
        run_stage(kind, tmp_path, inputs={"model": str(models["root"] / "fixed.tflite")}, model=DENSE_SPEC)
    fixed = {"tensors": {"x": {"shape": [1, 6]}}}
    assert run_stage(kind, tmp_path / "ok", inputs={"model": str(models["root"] / "fixed.tflite")}, model=fixed)


def test_a_paddle_model_asks_for_convert_openvino(tmp_path: Path) -> None:
    (tmp_path / "net.pdmodel").write_bytes(b"x")
    (tmp_path / "net.pdiparams").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"^input model \(net.pdmodel\): PaddlePaddle -> ONNX .* use convert.openvino"):
        run_stage(ConvertOnnx, tmp_path / "out", inputs={"model": str(tmp_path / "net.pdmodel")}, model=DENSE_SPEC)


def test_a_keras_file_keras_cannot_load_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"^input model \(broken.keras\): Keras cannot load it: ") as caught:
        run_stage(ConvertOpenvino, tmp_path / "out", inputs={"model": str(tmp_path / "broken.keras")}, model=IMAGE_SPEC)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("file", ["net.keras", "net.tflite"])
@pytest.mark.parametrize("kind", [ConvertOnnx, ConvertOpenvino])
def test_the_same_model_converts_to_the_same_bytes_in_one_process(
    models: dict, kind: type, file: str, tmp_path: Path
) -> None:
    """A worker converts many models: no process-wide counter (tf2onnx's node names) and no scratch path
    (OpenVINO's record of convert_model's arguments) may reach the bytes, or early cutoff never happens."""
    import hashlib

    spec = IMAGE_SPEC
    out = "model.onnx" if kind is ConvertOnnx else "model/model.xml"
    digests = []
    for run in ("a", "b"):
        run_stage(kind, tmp_path / run, inputs={"model": str(models["root"] / file)}, model=spec)
        digests.append(hashlib.sha256((tmp_path / run / out).read_bytes()).hexdigest())
        assert str(tmp_path) not in (tmp_path / run / out).read_bytes().decode("latin-1")
    assert digests[0] == digests[1]
