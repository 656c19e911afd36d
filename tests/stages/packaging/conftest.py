"""What the packaging tests package: an ONNX model built in code and the OpenVINO engine build.openvino makes of
it (batch 1..8), once per test module."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphs import CONV_SPEC, conv_bn, save
from harness import run_stage

from stages.build_openvino import BuildOpenvino


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(conv_bn(), tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="module")
def ov_engine(tmp_path_factory: pytest.TempPathFactory, onnx_file: Path) -> Path:
    """An OpenVINO engine as build.openvino writes it (batch 1..8, the rest static)."""
    out = tmp_path_factory.mktemp("built")
    run_stage(BuildOpenvino, out, {"inference_precision": "f32"}, inputs={"model": onnx_file}, model=CONV_SPEC)
    return out / "model"
