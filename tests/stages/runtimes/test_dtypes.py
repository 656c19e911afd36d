"""runtimes.dtypes: the one table of element types agrees with ONNX, ONNX Runtime, TensorRT, OpenVINO and ml_dtypes,
and is the only one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from stages.runtimes import dtypes as D

STAGES = Path(D.__file__).resolve().parent


def test_onnx_names_map_to_onnx_own_numpy_types() -> None:
    for t in D.ELEMENT_TYPES:
        assert hasattr(TensorProto, t.onnx), t
        if t.numpy is not None:
            assert helper.tensor_dtype_to_np_dtype(getattr(TensorProto, t.onnx)) == np.dtype(t.numpy), t.onnx
            assert np.dtype(t.numpy).name == t.name  # engine.json's name is numpy's own


def test_names_numpy_lacks_are_ml_dtypes_names() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert D.NON_NUMPY_NAMES == {"bfloat16", "float8_e4m3fn", "float8_e5m2", "int4", "uint4", "float4_e2m1fn"}
    for name in D.NON_NUMPY_NAMES:
        assert np.dtype(getattr(ml_dtypes, name)).name == name


def test_openvino_names_are_openvinos_own() -> None:
    ov = pytest.importorskip("openvino")
    for t in D.ELEMENT_TYPES:
        if t.openvino is not None:
            etype = getattr(ov.Type, t.openvino)
            assert etype.get_type_name() == t.openvino, t
            if t.numpy is not None:
                assert np.dtype(etype.to_dtype()) == np.dtype(t.numpy), t


def test_onnxruntime_reports_the_table_type_strings(tmp_path: Path) -> None:
    from stages.runtimes.onnx.io import session_from_onnx

    inputs = [helper.make_tensor_value_info(f"x_{name}", getattr(TensorProto, name), [1]) for name in D.ONNX_TO_NUMPY]
    nodes = [helper.make_node("Identity", [i.name], [f"y{k}"]) for k, i in enumerate(inputs)]
    outputs = [helper.make_tensor_value_info(f"y{k}", i.type.tensor_type.elem_type, [1]) for k, i in enumerate(inputs)]
    model = helper.make_model(
        helper.make_graph(nodes, "types", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    )
    (tmp_path / "types.onnx").write_bytes(model.SerializeToString())
    for inp in session_from_onnx(tmp_path / "types.onnx").get_inputs():
        assert D.dtype_of_ort(inp.type) == D.ONNX_TO_NUMPY[inp.name.removeprefix("x_")], inp.type


def test_lookups() -> None:
    assert D.dtype_of_ort("tensor(float16)") == np.float16 and D.dtype_of_ort("tensor(int8)") == np.int8
    assert D.dtype_of_ort("tensor(string)") == np.float32  # unknown: feeds are floats
    assert D.float_dtype_of_ort("tensor(double)") == np.float64
    assert D.float_dtype_of_ort("tensor(int64)") is None and D.float_dtype_of_ort("tensor(bool)") is None
    assert D.dtype_of_trt("HALF") == np.float16 and D.dtype_of_trt("BOOL") == np.bool_
    assert D.dtype_of_trt("BF16") is None and D.dtype_of_trt("FP8") is None
    # engine.json's names, for the builders: what each kind's own table (`_NON_NUMPY`) held, and the rest
    trt = {"BF16": "bfloat16", "FP8": "float8_e4m3fn", "INT4": "int4", "FP4": "float4_e2m1fn", "HALF": "float16"}
    assert {n: D.name_of_trt(n) for n in trt} == trt and D.name_of_trt("E8M0") is None
    ov = {"bf16": "bfloat16", "f8e4m3": "float8_e4m3fn", "f8e5m2": "float8_e5m2", "i4": "int4", "u4": "uint4"}
    ov |= {"f4e2m1": "float4_e2m1fn", "f32": "float32", "boolean": "bool"}
    assert {n: D.name_of_openvino(n) for n in ov} == ov and D.name_of_openvino("u16") is None


def test_tensorrt_names_match_tensorrt_nptype() -> None:
    trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed here")
    for name, dtype in D.TRT_TO_NUMPY.items():
        assert np.dtype(trt.nptype(getattr(trt.DataType, name))) == dtype, name


def test_no_other_type_table_in_stages() -> None:
    holders = sorted(p.name for p in STAGES.rglob("*.py") if '"tensor(float)"' in p.read_text())
    assert holders == []  # the table spells them "tensor({word})": a literal elsewhere is a second table
