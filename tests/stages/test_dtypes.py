"""_dtypes: the one table of element types agrees with ONNX, ONNX Runtime and TensorRT, and is the only one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from stages.runtimes import dtypes as D

STAGES = Path(D.__file__).resolve().parent


def test_onnx_names_map_to_onnx_own_numpy_types() -> None:
    for onnx_name, _, _, np_type in D.ELEMENT_TYPES:
        assert helper.tensor_dtype_to_np_dtype(getattr(TensorProto, onnx_name)) == np.dtype(np_type), onnx_name


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


def test_tensorrt_names_match_tensorrt_nptype() -> None:
    trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed here")
    for name, dtype in D.TRT_TO_NUMPY.items():
        assert np.dtype(trt.nptype(getattr(trt.DataType, name))) == dtype, name


def test_no_other_type_table_in_stages() -> None:
    holders = sorted(p.name for p in STAGES.rglob("*.py") if '"tensor(float)"' in p.read_text())
    assert holders == []  # the table spells them "tensor({word})": a literal elsewhere is a second table
