"""L2: a config against its backend and the engine it serves, as Triton's backends check it when they load.

Core accepts a config without looking at the model file; the backend then opens the file and compares. The
rules here are those comparisons, re-implemented from each backend's source:

- onnxruntime (`ModelInstanceState::ValidateInputs/ValidateOutputs`, onnxruntime.cc; `CompareDimsSupported`,
  onnxruntime_utils.cc): the input count, names, data types, and shapes; with max_batch_size > 0 "the first
  dimension must be -1" (server#2387, #1889, #7462); outputs compare exactly (a dynamic dim must be -1).
- openvino (`ModelState::ValidateInputs/ValidateOutputs`, openvino.cc; `CompareDimsSupported` and
  `doesMatch`, openvino_utils.cc): a range dim matches only sizes strictly inside it, never -1, so range shapes
  fail (openvino_backend#84); with max_batch_size > 0 the backend sets the batch (`ov::set_batch`), which an
  IR with a fixed batch dim does not take (server#6747, #6035: an error here); KIND_CPU only.
- tensorrt (`ModelState::AutoCompleteConfigHelper`, model_state.cc): max_batch_size <= the largest batch of
  the engine's optimization profile ("configuration specified max-batch N but TensorRT engine only supports
  max-batch M": server#7056, #5013, #1105); `CompareDimsSupported` (tensorrt_utils.cc); KIND_GPU only.

The engine's side is a `Member` (engine.json, the ONNX graph or the IR's partial shapes), so every backend is
checked against one description: dims as ints, or "a..b" / "a.." / "?" for dynamic ones.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from stages.packaging.members import Member
from stages.packaging.triton import dtypes, proto
from stages.packaging.triton.core import Identity
from stages.packaging.triton.parse import Problems
from stages.runtimes.engine_info import TensorInfo

_RANGE = re.compile(r"^(\d*)\.\.(\d*)$")


def check_backend(config: Any, ident: Identity, p: Problems) -> None:
    """What the backend rejects from the config alone: instance kinds it cannot run and data types its loader
    cannot convert (onnxruntime/openvino/tensorrt `ModelConfigDataTypeTo*`)."""
    kinds = proto.model_config_pb2().ModelInstanceGroup
    for i, group in enumerate(config.instance_group):
        kind = kinds.Kind.Name(group.kind)
        if ident.backend == "tensorrt" and group.kind not in (kinds.KIND_GPU, kinds.KIND_AUTO, kinds.KIND_MODEL):
            p.add(f"instance_group[{i}].kind", f"{kind}: the TensorRT backend supports only GPU devices")
        if ident.backend == "openvino" and group.kind not in (kinds.KIND_CPU, kinds.KIND_AUTO):
            p.add(
                f"instance_group[{i}].kind", f"{kind}: Triton's OpenVINO backend supports only KIND_CPU and KIND_AUTO"
            )
    if ident.backend not in ("onnxruntime", "openvino", "tensorrt"):
        return
    names = proto.model_config_pb2().DataType
    for side in ("input", "output"):
        for i, io in enumerate(getattr(config, side)):
            name = names.Name(io.data_type)
            if io.data_type and not dtypes.backend_takes(ident.backend, name):
                p.add(f"{side}[{i}].data_type", f"{name} is not a type the {ident.backend} backend takes")


def check_artifact(config: Any, ident: Identity, member: Member, p: Problems, file: str | None = None) -> None:
    """Every way `config` disagrees with the engine `member` it serves (`file`: named in each line, when a
    model serves several plans)."""
    tag = f" ({file})" if file else ""
    kinds = proto.model_config_pb2().ModelInstanceGroup
    # OpenVINO's KIND_GPU is the backend's rule (`check_backend`); an ONNX Runtime engine says its device.
    built_for = member.info.device.device if member.info is not None and member.backend == "onnxruntime" else None
    for i, group in enumerate(config.instance_group):
        if group.kind == kinds.KIND_GPU and built_for == "CPU":
            p.add(f"instance_group[{i}].kind", f"KIND_GPU, but {member.label} was built for CPU{tag}")
    mbs = config.max_batch_size
    _check_names(config, member, p, tag)
    for side, tensors in (("input", member.inputs), ("output", member.outputs)):
        by_name = {t.name: t for t in tensors}
        for i, io in enumerate(getattr(config, side)):
            tensor = by_name.get(io.name)
            if tensor is None:
                continue
            field = f"{side}[{i}]"
            if _check_dtype(io, tensor, field, p, tag) and tensor.dims is not None:
                dims = list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)
                _check_dims(ident.backend, side, dims, tensor, mbs, field, p, tag)
    if mbs > 0:
        _check_max_batch(ident.backend, member, mbs, p, tag)


def _check_names(config: Any, member: Member, p: Problems, tag: str) -> None:
    """Inputs: exactly the engine's (onnxruntime/openvino: "configuration expects N inputs, model provides M";
    a name the engine lacks: `CheckAllowedModelInput`). Outputs: a subset of the engine's."""
    inputs = [t.name for t in member.inputs]
    for i, io in enumerate(config.input):
        if io.name not in inputs:
            p.add(
                f"input[{i}].name", f"{io.name!r} is not an input of {member.label} (it has {', '.join(inputs)}){tag}"
            )
    given = {io.name for io in config.input}
    missing = [n for n in inputs if n not in given]
    if missing and config.input:
        p.add("input", f"{member.label} also takes {', '.join(missing)}, which the config does not declare{tag}")
    elif missing:
        p.add("input", f"none declared; {member.label} takes {', '.join(missing)}{tag}")
    outputs = [t.name for t in member.outputs]
    for i, io in enumerate(config.output):
        if io.name not in outputs:
            p.add(
                f"output[{i}].name",
                f"{io.name!r} is not an output of {member.label} (it has {', '.join(outputs)}){tag}",
            )


def _check_dtype(io: Any, tensor: TensorInfo, field: str, p: Problems, tag: str) -> bool:
    """The config's TYPE_* is the engine's dtype by Triton's table (`dtypes`); an engine dtype with no row is
    one Triton cannot serve."""
    wanted = dtypes.config_type(tensor.dtype)
    name = proto.model_config_pb2().DataType.Name(io.data_type)
    if io.data_type == 0 and wanted is not None:
        return False  # no data_type at all: core's rule says so (`core.check_io_shape`)
    if wanted is None:
        p.add(f"{field}.data_type", f"{io.name!r} is {tensor.dtype} in the engine, which Triton has no type for{tag}")
        return False
    if name != wanted:
        p.add(f"{field}.data_type", f"{name}, but the engine's {io.name!r} is {tensor.dtype} ({wanted}){tag}")
        return False
    return True


def _check_dims(
    backend: str, side: str, dims: list[int], tensor: TensorInfo, mbs: int, field: str, p: Problems, tag: str
) -> None:
    """The config's shape against the engine's, by the backend's `CompareDimsSupported`."""
    model = list(tensor.dims or ())
    full = ([-1] if mbs > 0 else []) + dims
    shown = "[" + ", ".join(str(d) for d in model) + "]"
    if mbs > 0 and not model:
        p.add(f"{field}.dims", f"max_batch_size {mbs} > 0, but {tensor.name!r} is a scalar in the engine{tag}")
        return
    if not model:
        if any(d != 1 for d in dims):
            p.add(f"{field}.dims", f"{dims}: {tensor.name!r} is a scalar in the engine; dims must be [1]{tag}")
        return
    if mbs > 0 and isinstance(model[0], int):
        if backend == "onnxruntime":
            p.add(
                f"{field}.dims",
                f"max_batch_size {mbs} > 0, but {tensor.name!r} has a static batch dim {model[0]} in the model "
                f"(Triton onnxruntime: the first dimension must be -1; export with a dynamic batch or set "
                f"max_batch_size 0){tag}",
            )
            return
        if backend == "openvino":
            p.add(
                f"{field}.dims",
                f"max_batch_size {mbs} > 0, but the IR's batch dim of {tensor.name!r} is fixed at {model[0]}: "
                f"its layout does not batch (the backend's ov::set_batch reshapes it to {mbs}); set max_batch_size 0 "
                f"or build with a dynamic batch{tag}",
            )
            return
    if len(model) != len(full):
        p.add(
            f"{field}.dims",
            f"full shape {full} (rank {len(full)}{', batch dim first' if mbs > 0 else ''}) but the engine's "
            f"{tensor.name!r} is {shown} (rank {len(model)}){tag}",
        )
        return
    for k, (have, want) in enumerate(zip(model, full)):
        if mbs > 0 and k == 0:
            continue  # the batch dim: checked above and by max_batch_size (OpenVINO: ov::set_batch makes it that)
        j = k - 1 if mbs > 0 else k
        if not _matches(backend, side, have, want, mbs > 0):
            if backend == "openvino" and _bounded_range(have) and want == -1:
                p.add(
                    f"{field}.dims[{j}]",
                    f"-1, but the IR's dim of {tensor.name!r} is the range {have}: Triton's OpenVINO backend matches "
                    f"a range only to a size strictly inside it (openvino_backend#84){tag}",
                )
            else:
                p.add(f"{field}.dims[{j}]", f"{want}, but the engine's {tensor.name!r} is {shown}{tag}")
            return


def _matches(backend: str, side: str, have: int | str, want: int, batching: bool) -> bool:
    """One dim, by the backend's rule: onnxruntime compares a static model dim always and a dynamic one exactly
    on outputs; tensorrt skips -1 on either side; openvino (openvino_utils.cc `CompareDimsSupported`) skips a -1
    of an input when the model batches (compare_exact false) and compares every other dim by `doesMatch`."""
    dynamic = not isinstance(have, int)
    if backend == "onnxruntime":
        if dynamic:
            return side == "input" or want == -1
        return have == want
    if backend == "openvino":
        if side == "input" and batching and want == -1:
            return True
        return _does_match(have, want)
    if dynamic or want == -1:
        return True
    return have == want


def _does_match(have: int | str, want: int) -> bool:
    """openvino_utils.cc `doesMatch`: a static dim equals; an unbounded one matches anything; a bounded range
    only what lies strictly inside it."""
    if isinstance(have, int):
        return have == want
    match = _RANGE.match(have)
    if have == "?" or match is None or not match.group(2):
        return True
    low, high = int(match.group(1) or 0), int(match.group(2))
    return low < want < high


def _bounded_range(dim: int | str) -> bool:
    if isinstance(dim, int):
        return False
    match = _RANGE.match(dim)
    return match is not None and bool(match.group(2)) and match.group(1) != match.group(2)


def engine_max_batch(tensors: Sequence[TensorInfo]) -> int | None:
    """The largest batch an engine takes: the smallest over its inputs of the profile's max batch (TensorRT's
    `GetProfileMaxBatchSize`), a range's upper end, or a static first dim; None when no input bounds it."""
    bounds = []
    for t in tensors:
        if not t.dims:
            continue
        if t.max is not None:
            bounds.append(t.max[0])
        elif isinstance(t.dims[0], int):
            bounds.append(t.dims[0])
        else:
            match = _RANGE.match(t.dims[0])
            if match and match.group(2):
                bounds.append(int(match.group(2)))
    return min(bounds) if bounds else None


def _check_max_batch(backend: str, member: Member, mbs: int, p: Problems, tag: str) -> None:
    """TensorRT: the engine's max batch (a static first dim counts: `GetProfileMaxBatchSize`). Others: the
    upper end of a batch range the engine declares (a static batch dim is said by `_check_dims`)."""
    if backend == "tensorrt":
        largest = engine_max_batch(member.inputs)
        if largest is not None and mbs > largest:
            p.add(
                "max_batch_size",
                f"configuration specified max-batch {mbs} but TensorRT engine only supports max-batch {largest}{tag}",
            )
        return
    ranged = [t for t in member.inputs if t.dims and _bounded_range(t.dims[0])]
    largest = engine_max_batch(ranged)
    if largest is not None and mbs > largest:
        p.add(
            "max_batch_size",
            f"{mbs} > {largest}, the largest batch {member.label} takes (its batch range's upper end){tag}",
        )
