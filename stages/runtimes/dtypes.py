"""One table of tensor element types: engine.json's names, ONNX's, ONNX Runtime's, TensorRT's, OpenVINO's, numpy.

Every module that casts feeds or generates inputs (the ONNX Runtime runner,
`runtimes.onnx.io.random_inputs`, `runtimes.onnx.check.compare_onnx`, the TensorRT runner)
and every builder that names its engine's I/O types in engine.json (build.openvino,
build.tensorrt, `runtimes.engine_info`'s check of those names) reads this one table,
so adding a type is one row. numpy only: kind modules import it on the engine's cached path.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class ElementType(NamedTuple):
    """One element type as each library names it. `name` is what engine.json records: numpy's name, or for a
    type numpy lacks (`numpy` None) the name ml_dtypes, the numpy-ecosystem package for them, gives it."""

    name: str
    onnx: str  # TensorProto name
    ort: str  # ONNX Runtime's word in "tensor(<word>)"
    trt: str | None  # TensorRT DataType name
    openvino: str | None  # ov.Type name
    numpy: Any  # the numpy type, None where numpy has none


ELEMENT_TYPES: tuple[ElementType, ...] = (
    ElementType("float32", "FLOAT", "float", "FLOAT", "f32", np.float32),
    ElementType("float16", "FLOAT16", "float16", "HALF", "f16", np.float16),
    ElementType("float64", "DOUBLE", "double", None, "f64", np.float64),
    ElementType("int64", "INT64", "int64", "INT64", "i64", np.int64),
    ElementType("int32", "INT32", "int32", "INT32", "i32", np.int32),
    ElementType("int16", "INT16", "int16", None, "i16", np.int16),
    ElementType("int8", "INT8", "int8", "INT8", "i8", np.int8),
    ElementType("uint8", "UINT8", "uint8", "UINT8", "u8", np.uint8),
    ElementType("bool", "BOOL", "bool", "BOOL", "boolean", np.bool_),
    # Types numpy lacks (OpenVINO's Type.to_dtype() even gives float16 for bf16): named as ml_dtypes names them.
    ElementType("bfloat16", "BFLOAT16", "bfloat16", "BF16", "bf16", None),
    ElementType("float8_e4m3fn", "FLOAT8E4M3FN", "float8e4m3fn", "FP8", "f8e4m3", None),
    ElementType("float8_e5m2", "FLOAT8E5M2", "float8e5m2", None, "f8e5m2", None),
    ElementType("int4", "INT4", "int4", "INT4", "i4", None),
    ElementType("uint4", "UINT4", "uint4", None, "u4", None),
    ElementType("float4_e2m1fn", "FLOAT4E2M1", "float4e2m1", "FP4", "f4e2m1", None),
)

_IN_NUMPY = tuple(t for t in ELEMENT_TYPES if t.numpy is not None)
ONNX_TO_NUMPY: dict[str, np.dtype] = {t.onnx: np.dtype(t.numpy) for t in _IN_NUMPY}
ORT_TO_NUMPY: dict[str, np.dtype] = {f"tensor({t.ort})": np.dtype(t.numpy) for t in _IN_NUMPY}
TRT_TO_NUMPY: dict[str, np.dtype] = {t.trt: np.dtype(t.numpy) for t in _IN_NUMPY if t.trt}
# engine.json's names of the types numpy lacks.
NON_NUMPY_NAMES: frozenset[str] = frozenset(t.name for t in ELEMENT_TYPES if t.numpy is None)
_NAME_OF_TRT = {t.trt: t.name for t in ELEMENT_TYPES if t.trt}
_NAME_OF_OPENVINO = {t.openvino: t.name for t in ELEMENT_TYPES if t.openvino}


def dtype_of_ort(ort_type: str) -> np.dtype:
    """The numpy dtype of an ONNX Runtime type string; float32 for one the table lacks (feeds are floats)."""
    return ORT_TO_NUMPY.get(ort_type, np.dtype(np.float32))


def float_dtype_of_ort(ort_type: str) -> np.dtype | None:
    """The numpy dtype of a floating ONNX Runtime type, None for any other (integer feeds stay as given)."""
    dtype = ORT_TO_NUMPY.get(ort_type)
    return dtype if dtype is not None and dtype.kind == "f" else None


def dtype_of_trt(name: str) -> np.dtype | None:
    """The numpy dtype of a TensorRT DataType name (`DataType.HALF.name`); None for BF16, FP8, INT4..."""
    return TRT_TO_NUMPY.get(name)


def name_of_trt(name: str) -> str | None:
    """engine.json's name of a TensorRT DataType name ("HALF" -> "float16", "BF16" -> "bfloat16"); None for a
    type the table lacks."""
    return _NAME_OF_TRT.get(name)


def name_of_openvino(name: str) -> str | None:
    """engine.json's name of an OpenVINO element type name ("f32" -> "float32", "bf16" -> "bfloat16"); None for a
    type the table lacks."""
    return _NAME_OF_OPENVINO.get(name)


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Normal floats, small non-negative ints (valid as indices), or coin-flip bools."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 8, size=shape).astype(dtype)
