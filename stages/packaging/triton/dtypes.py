"""Triton's data types, one table: the config's `TYPE_*` name, engine.json's (numpy's) name, and the backends
that take it.

The rows are Triton's datatype table (server docs `model_configuration.md`, "Datatypes"); which backend takes
which type is read from each backend's own converter: onnxruntime `ModelConfigDataTypeToOnnxDataType`
(onnxruntime_utils.cc), openvino `ModelConfigDataTypeToOpenVINOElement` (openvino_utils.cc), tensorrt
`ConvertDataTypeToTrtType` (tensorrt_utils.cc). A config type a backend lacks fails that backend's load
("unsupported datatype"); an engine type with no row (float8, int4) cannot be served at all.
"""

from __future__ import annotations

from typing import NamedTuple


class TritonType(NamedTuple):
    """One Triton data type: its config name, engine.json's name for it, the backends that take it."""

    config: str  # TYPE_FP32
    numpy: str  # engine.json's name (numpy's; "object" for Triton's bytes)
    backends: frozenset[str]


_ALL = frozenset({"onnxruntime", "openvino", "tensorrt"})
_ORT_OV = frozenset({"onnxruntime", "openvino"})
_ORT = frozenset({"onnxruntime"})
_ORT_TRT = frozenset({"onnxruntime", "tensorrt"})

TABLE: tuple[TritonType, ...] = (
    TritonType("TYPE_BOOL", "bool", _ALL),
    TritonType("TYPE_UINT8", "uint8", _ALL),
    TritonType("TYPE_UINT16", "uint16", _ORT_OV),
    TritonType("TYPE_UINT32", "uint32", _ORT_OV),
    TritonType("TYPE_UINT64", "uint64", _ORT_OV),
    TritonType("TYPE_INT8", "int8", _ALL),
    TritonType("TYPE_INT16", "int16", _ORT_OV),
    TritonType("TYPE_INT32", "int32", _ALL),
    TritonType("TYPE_INT64", "int64", _ALL),
    TritonType("TYPE_FP16", "float16", _ALL),
    TritonType("TYPE_FP32", "float32", _ALL),
    TritonType("TYPE_FP64", "float64", _ORT),
    TritonType("TYPE_STRING", "object", _ORT),
    TritonType("TYPE_BF16", "bfloat16", _ORT_TRT),
)
BY_CONFIG = {t.config: t for t in TABLE}
BY_NUMPY = {t.numpy: t for t in TABLE}


def config_type(numpy_name: str) -> str | None:
    """The config's TYPE_* for engine.json's dtype name ("float32" -> "TYPE_FP32"); None when Triton has none."""
    row = BY_NUMPY.get(numpy_name)
    return row.config if row else None


def numpy_type(config_name: str) -> str | None:
    """engine.json's dtype name for a config TYPE_* ("TYPE_BF16" -> "bfloat16"); None for TYPE_INVALID."""
    row = BY_CONFIG.get(config_name)
    return row.numpy if row else None


def backend_takes(backend: str, config_name: str) -> bool:
    """Whether `backend`'s loader converts this config type (a backend not in the table takes anything)."""
    row = BY_CONFIG.get(config_name)
    if backend not in _ALL:
        return row is not None
    return row is not None and backend in row.backends
