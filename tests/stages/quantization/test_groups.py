"""Quantizer groups of a real NNCF model, and one group reverted to float: its quantizers bypassed, its float weight
back, the rest still INT8, and the outputs those of NNCF's own model with that group in its ignored scope."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from graphs import gelu_mlp, save

ov = pytest.importorskip("openvino")
nncf = pytest.importorskip("nncf")

from stages.quantization.groups import Group, groups, reverted  # noqa: E402


def test_reverting_a_group_puts_it_back_in_float(tmp_path: Path) -> None:
    path = save(gelu_mlp(), tmp_path / "model.onnx")
    core = ov.Core()
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(64)]
    quantized = nncf.quantize(core.read_model(path), nncf.Dataset(calib), subset_size=64)
    float_model = core.read_model(path)
    found = groups(quantized, float_model)
    assert [g.name for g in found] == ["fc1", "embedding"]  # fc2 takes its output's name in OpenVINO
    assert all(g.type == "MatMul" for g in found)

    back = reverted(quantized, float_model, Group("embedding", "MatMul"))
    node = next(op for op in back.get_ops() if op.get_friendly_name() == "embedding")
    sources = [port.get_source_output().get_node() for port in node.inputs()]
    assert [s.get_type_name() for s in sources] == ["Gelu", "Constant"]
    assert sources[1].get_element_type() == ov.Type.f32  # the float weight, not the 8-bit one
    assert [g.name for g in groups(back, float_model)] == ["fc1"]  # the other group is untouched
    assert sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops()) == 2  # the original is kept

    x = rng.standard_normal((32, 16)).astype(np.float32)
    config = {"INFERENCE_PRECISION_HINT": "f32"}

    def run(model: object) -> np.ndarray:
        return np.asarray(core.compile_model(model, "CPU", config)(x)[0])

    # what NNCF itself makes with the group in its ignored scope, with no new calibration
    ignored = nncf.quantize(
        core.read_model(path), nncf.Dataset(calib), subset_size=64, ignored_scope=nncf.IgnoredScope(["embedding"])
    )
    np.testing.assert_allclose(run(back), run(ignored), atol=1e-5)
    assert np.abs(run(back) - run(quantized)).max() > 1e-3  # and it is not the INT8 model
