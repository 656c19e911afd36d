"""Triton's config proto, from the two places it comes from here: tritonclient's generated `model_config_pb2`
(the `inference.ModelConfig` message Triton reads config.pbtxt into) and protobuf's text and JSON formats.

One module imports them (neither ships type information), so the rest of the package stays typed and cheap
to import: each accessor imports on first call.
"""

from __future__ import annotations

from typing import Any


def model_config_pb2() -> Any:
    """tritonclient's `model_config_pb2` module (`ModelConfig`, `DataType`, `ModelInstanceGroup`...)."""
    from tritonclient.grpc import model_config_pb2 as module

    return module


def text_format() -> Any:
    """protobuf's `text_format`: config.pbtxt is a ModelConfig in protobuf's text format."""
    return _protobuf()[0]


def json_format() -> Any:
    """protobuf's `json_format` (a config built as a dict is parsed with it, then printed as text)."""
    return _protobuf()[1]


def _protobuf() -> tuple[Any, Any]:
    from google.protobuf import json_format, text_format  # type: ignore[import-untyped,unused-ignore]

    return text_format, json_format


def new_config() -> Any:
    """An empty `inference.ModelConfig`."""
    return model_config_pb2().ModelConfig()
