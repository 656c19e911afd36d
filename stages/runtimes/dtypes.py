"""One table of tensor element types: ONNX's names, ONNX Runtime's type strings, TensorRT's names, numpy.

Every module that casts feeds or generates inputs (the ONNX Runtime runner,
`runtimes.onnx.io.random_inputs`, `runtimes.onnx.check.compare_onnx`, the TensorRT runner)
reads this one table, so adding a type is one row. numpy only: kind modules
import it on the engine's cached path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# (ONNX TensorProto name, ONNX Runtime's word in "tensor(<word>)", TensorRT DataType name or None, numpy type)
ELEMENT_TYPES: tuple[tuple[str, str, str | None, Any], ...] = (
    ("FLOAT", "float", "FLOAT", np.float32),
    ("FLOAT16", "float16", "HALF", np.float16),
    ("DOUBLE", "double", None, np.float64),
    ("INT64", "int64", "INT64", np.int64),
    ("INT32", "int32", "INT32", np.int32),
    ("INT16", "int16", None, np.int16),
    ("INT8", "int8", "INT8", np.int8),
    ("UINT8", "uint8", "UINT8", np.uint8),
    ("BOOL", "bool", "BOOL", np.bool_),
)

ONNX_TO_NUMPY: dict[str, np.dtype] = {onnx: np.dtype(np_type) for onnx, _, _, np_type in ELEMENT_TYPES}
ORT_TO_NUMPY: dict[str, np.dtype] = {f"tensor({ort})": np.dtype(np_type) for _, ort, _, np_type in ELEMENT_TYPES}
TRT_TO_NUMPY: dict[str, np.dtype] = {trt: np.dtype(np_type) for _, _, trt, np_type in ELEMENT_TYPES if trt}


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
