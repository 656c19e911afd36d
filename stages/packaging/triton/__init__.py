"""Triton model repositories, written and checked offline: the checks package.triton runs before it writes.

Triton accepts or rejects a repository only when a server loads it, on the machine it serves from; most of
what it rejects (and what it silently skips) can be decided from the files. Each module holds one job:

- `proto`: where Triton's config proto comes from (tritonclient's `model_config_pb2`, protobuf's text format).
- `dtypes`: Triton's data types against engine.json's numpy names, and which each backend takes.
- `parse` (L0): a config.pbtxt read with `text_format.Parse` (unknown fields, bad enums, wrong types).
- `core` (L1): Triton core's own rules, re-implemented from `model_config_utils.cc` (each function cites its
  source): identity, batching, I/O shapes, instance groups, caching, metrics; `sequence` and `ensemble` hold
  the sequence batcher's and ensembles' rules; `rules` applies them all to one config.
- `backends` (L2): a config against the engine it serves (ONNX graph, OpenVINO IR, TensorRT's engine.json),
  as the onnxruntime, openvino and tensorrt backends check it when they load.
- `layout`: the repository's folders and files (version folders, default and per-GPU files, names).
- `repository`: `check_repository`, all of the above over a written repository (or one held in memory).
- `plan`: which engines become which model, and the config each gets.

Nothing here imports tritonclient, protobuf, onnx, openvino or numpy at module level: kind modules import
these on the cached path (tests/test_imports.py).
"""
