"""L1: Triton core's rules for one config, re-implemented from triton-inference-server/core.

The server reads a model's config in its repository manager before any backend is loaded
(`model_repository_manager.cc`): it fills the identity fields (`AutoCompleteBackendFields`), normalizes
(`NormalizeModelConfig`), then validates (`ValidateModelConfig`); the backend's model later validates the
I/O (`ValidateModelIOConfig`, model.cc) and the instance groups once they are normalized
(`ValidateInstanceGroup`, backend_model.cc). Each function here names the function it follows, and each
problem is one line: `<model>/config.pbtxt: <field>: <what>`, with Triton's own words where they help a search.

What needs the machine that serves (which GPU ids exist, their compute capability) is left to it; what
Triton fixes silently (a negative instance count becomes its default) is an error here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Collection

from stages.packaging.triton import proto
from stages.packaging.triton.parse import Problems

WILDCARD = -1  # triton::common::WILDCARD_DIM
ENSEMBLE = "ensemble"
# core src/constants.h: platform -> the backend AutoCompleteBackendFields gives it, and each backend's file.
PLATFORM_BACKEND = {
    "tensorrt_plan": "tensorrt",
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "torch_aoti": "pytorch",
    "tensorflow_graphdef": "tensorflow",
    "tensorflow_savedmodel": "tensorflow",
}
DEFAULT_FILE = {
    "tensorrt": "model.plan",
    "onnxruntime": "model.onnx",
    "openvino": "model.xml",
    "pytorch": "model.pt",
    "python": "model.py",
}
_INFER = (
    ("tensorrt", {"model.plan"}),
    ("onnxruntime", {"model.onnx"}),
    ("openvino", {"model.xml"}),
    ("pytorch", {"model.pt", "model.pt2"}),
    ("python", {"model.py"}),
)
_BACKEND_PLATFORM = {"tensorrt": "tensorrt_plan", "onnxruntime": "onnxruntime_onnx", "pytorch": "pytorch_libtorch"}
_TF_FILES = {"model.savedmodel": "tensorflow_savedmodel", "model.graphdef": "tensorflow_graphdef"}
# GetBackendType / GetBackendTypeFromPlatform: the backends core knows a platform for (TORCHAOTI == PYTORCH).
_STOI = re.compile(r"^\s*[+-]?[0-9]+")
_KNOWN_BACKENDS = frozenset({"tensorflow", "tensorrt", "onnxruntime", "pytorch"})


@dataclass(frozen=True)
class Identity:
    """A config's name, platform, backend and default file after `AutoCompleteBackendFields`."""

    name: str
    platform: str
    backend: str
    default_model_filename: str


def identity(config: Any, folder: str | None = None, files: Collection[str] = ()) -> tuple[Identity, str | None]:
    """The identity Triton completes (core `AutoCompleteBackendFields`, model_config_utils.cc): the name from
    the folder, the backend from the platform, the default file name or the files of the first version
    folder (`files`); and the problem when none can be inferred."""
    name = config.name or folder or ""
    platform, backend, default = config.platform, config.backend, config.default_model_filename
    if not platform and backend in ("", "tensorflow"):
        if default in _TF_FILES:
            platform = _TF_FILES[default]
        elif not default:
            platform = next((p for f, p in _TF_FILES.items() if f in files), "")
    if platform in _TF_FILES.values():
        return Identity(name, platform, backend or "tensorflow", default or _first(_TF_FILES, platform)), None
    if not backend:  # Triton's order: TensorRT, ONNX Runtime, OpenVINO, PyTorch, Python; platform or file name
        for candidate, names in _INFER:
            platforms = {p for p, b in PLATFORM_BACKEND.items() if b == candidate}
            if platform in platforms or default in names or (not platform and not default and names & set(files)):
                backend = candidate
                break
    if backend == "pytorch" and platform == "torch_aoti":
        return Identity(name, platform, backend, default or "model.pt2"), None
    if backend in DEFAULT_FILE:
        platform = platform or _BACKEND_PLATFORM.get(backend, "")
        return Identity(name, platform, backend, default or DEFAULT_FILE[backend]), None
    if not backend and not platform and not default:
        # The custom-backend form: a folder named `<model>.<backend>`.
        if folder and "." in folder:
            custom = folder.split(".", 1)[1]
            return Identity(name, platform, custom, f"model.{custom}"), None
        return Identity(name, platform, backend, default), (
            "platform/backend: neither is given and none can be inferred from the files "
            "(Triton: must specify 'platform' or 'backend')"
        )
    return Identity(name, platform, backend, default), None


def _first(table: dict[str, str], value: str) -> str:
    return next(k for k, v in table.items() if v == value)


def check_model_config(config: Any, ident: Identity, p: Problems) -> None:
    """core `ValidateModelConfig` (model_config_utils.cc): identity, max_batch_size, the dynamic batcher, the
    response cache and model metrics (the sequence batcher and ensembles: `sequence`, `ensemble`)."""
    if not ident.name:
        p.add("name", "missing and no folder gives it (Triton: model configuration must specify 'name')")
    if not ident.backend and ident.platform and ident.platform != ENSEMBLE:
        p.add("platform", f"unknown platform {ident.platform!r} and no backend (Triton: unexpected platform type)")
    elif ident.backend and ident.platform == ENSEMBLE:
        p.add("backend", f"{ident.backend!r}: an ensemble must have platform 'ensemble' and no backend")
    known = ident.backend if ident.backend in _KNOWN_BACKENDS else None
    if known and PLATFORM_BACKEND.get(ident.platform) != known:
        p.add(
            "platform",
            f"{ident.platform!r} does not go with backend {ident.backend!r} "
            f"(Triton: unexpected 'platform' and 'backend' pair)",
        )
    mbs = config.max_batch_size
    if mbs < 0:
        p.add("max_batch_size", f"{mbs} is negative (Triton: 'max_batch_size' must be non-negative value)")
    if config.HasField("dynamic_batching"):
        check_dynamic_batching(config.dynamic_batching, mbs, p)
    if config.response_cache.enable and config.model_transaction_policy.decoupled:
        p.add("response_cache.enable", "the response cache does not support a decoupled model (Triton rejects it)")
    if config.HasField("model_metrics"):
        for i, control in enumerate(config.model_metrics.metric_control):
            field = f"model_metrics.metric_control[{i}]"
            if not control.HasField("metric_identifier"):
                p.add(field, "must specify 'metric_identifier'")
            elif not control.metric_identifier.family:
                p.add(f"{field}.metric_identifier.family", "must not be empty")
            if not control.HasField("histogram_options"):
                p.add(field, "must specify 'histogram_options'")
            elif not control.histogram_options.buckets:
                p.add(f"{field}.histogram_options.buckets", "must not be empty")


def check_dynamic_batching(batching: Any, mbs: int, p: Problems) -> None:
    """The dynamic batcher's part of core `ValidateModelConfig`: preferred sizes in (0, max_batch_size],
    priority levels in range, preserve_ordering with one level and no DELAY timeout."""
    for i, size in enumerate(batching.preferred_batch_size):
        field = f"dynamic_batching.preferred_batch_size[{i}]"
        if size <= 0:
            p.add(field, f"{size} is not positive (Triton: dynamic batching preferred size must be positive)")
        elif size > mbs:
            p.add(field, f"{size} > max_batch_size {mbs} (Triton: preferred size must be <= max batch size)")
    levels = batching.priority_levels
    if levels:
        if not 1 <= batching.default_priority_level <= levels:
            p.add(
                "dynamic_batching.default_priority_level",
                f"{batching.default_priority_level} is not in [1, {levels}] (priority_levels {levels})",
            )
        for level in sorted(batching.priority_queue_policy):
            if not 1 <= level <= levels:
                p.add(
                    f"dynamic_batching.priority_queue_policy[{level}]",
                    f"priority level {level} is not in [1, {levels}]",
                )
    if batching.preserve_ordering:
        if levels > 1:
            p.add("dynamic_batching.preserve_ordering", f"needs one priority level, not {levels}")
        policies = [("default_queue_policy", batching.default_queue_policy)] + [
            (f"priority_queue_policy[{k}]", v) for k, v in sorted(batching.priority_queue_policy.items())
        ]
        delay = proto.model_config_pb2().ModelQueuePolicy.DELAY
        for name, policy in policies:
            if policy.default_timeout_microseconds and policy.timeout_action == delay:
                p.add(
                    f"dynamic_batching.{name}.timeout_action",
                    "DELAY cannot be the timeout action when preserve_ordering is true",
                )


def check_instance_groups(config: Any, ident: Identity, p: Problems) -> None:
    """core `ValidateInstanceGroup` (model_config_utils.cc), on what `NormalizeInstanceGroup` leaves alone:
    KIND_MODEL and KIND_CPU take no GPU ids, a profile only on TensorRT and only a non-negative integer; a
    negative count (which Triton silently replaces with its default) is an error here."""
    if config.HasField("ensemble_scheduling"):
        return
    kinds = proto.model_config_pb2().ModelInstanceGroup
    for i, group in enumerate(config.instance_group):
        field = f"instance_group[{i}]"
        kind = kinds.Kind.Name(group.kind)
        if group.kind in (kinds.KIND_MODEL, kinds.KIND_CPU) and group.gpus:
            p.add(f"{field}.gpus", f"{kind} takes no GPU ids, got {list(group.gpus)}")
        if group.count < 0:
            p.add(f"{field}.count", f"{group.count} is not >= 1 (Triton silently uses its default count instead)")
        if group.profile and ident.platform != "tensorrt_plan":
            p.add(f"{field}.profile", "only TensorRT models take a profile")
            continue
        for j, profile in enumerate(group.profile):
            number = _STOI.match(profile)  # GetProfileIndex: std::stoi, which reads a leading integer
            if number is None or int(number.group(0)) < 0:
                p.add(f"{field}.profile[{j}]", f"{profile!r} is not a non-negative integer")


def check_io(config: Any, ident: Identity, p: Problems) -> None:
    """core `ValidateModelIOConfig` (model_config_utils.cc): each input (`ValidateModelInput`) and output
    (`ValidateModelOutput`) through `ValidateIOShape`, then `ValidateBatchIO`."""
    fmt = proto.model_config_pb2().ModelInput
    for i, io in enumerate(config.input):
        field = f"input[{i}]"
        if not check_io_shape(io, config.max_batch_size, field, p):
            continue
        if io.format in (fmt.FORMAT_NHWC, fmt.FORMAT_NCHW) and len(io.dims) != 3:
            p.add(f"{field}.format", f"{fmt.Format.Name(io.format)} needs 3 dims, got {len(io.dims)}")
        _tensorrt_only(io, ident, field, p)
    for i, io in enumerate(config.output):
        field = f"output[{i}]"
        if check_io_shape(io, config.max_batch_size, field, p):
            _tensorrt_only(io, ident, field, p)
    check_batch_io(config, p)


def _tensorrt_only(io: Any, ident: Identity, field: str, p: Problems) -> None:
    """Shape tensors and non-linear I/O formats (core `ValidateModelInput`, `ValidateNonLinearFormatIO`)."""
    if io.is_shape_tensor and ident.platform != "tensorrt_plan":
        p.add(f"{field}.is_shape_tensor", "shape tensors are only supported for the TensorRT platform")
    if io.is_non_linear_format_io:
        if ident.platform != "tensorrt_plan":
            p.add(f"{field}.is_non_linear_format_io", "non-linear I/O formats are only supported for TensorRT")
        elif len(io.dims) != 3:
            p.add(f"{field}.is_non_linear_format_io", f"a non-linear I/O format needs 3 dims, got {len(io.dims)}")


def check_io_shape(io: Any, mbs: int, field: str, p: Problems) -> bool:
    """core `ValidateIOShape` (model_config_utils.cc): name, data_type and non-empty dims, each dim >= 1 or
    -1, a reshape of the same element count (per run of fixed dims between variable ones); no empty reshape
    on a non-batching model. False at the first problem, as Triton stops there."""
    count = len(p.lines)
    if not io.name:
        p.add(f"{field}.name", "missing (Triton: must specify 'name')")
        return False
    if io.data_type == 0:
        p.add(f"{field}.data_type", f"missing for {io.name!r} (Triton: must specify 'data_type')")
    elif not io.dims:
        p.add(f"{field}.dims", f"empty for {io.name!r} (a scalar is dims: [1] with reshape: {{shape: []}})")
    elif io.HasField("reshape") and not io.reshape.shape and mbs == 0:
        p.add(f"{field}.reshape", "empty on a non-batching model (Triton: scalar tensors are not supported)")
    else:
        for j, dim in enumerate(io.dims):
            if dim < 1 and dim != WILDCARD:
                p.add(f"{field}.dims[{j}]", f"{dim} is not >= 1 or -1")
                return False
        if io.HasField("reshape"):
            _check_reshape(io, field, p)
    return len(p.lines) == count


def _check_reshape(io: Any, field: str, p: Problems) -> None:
    shape = list(io.reshape.shape)
    for j, dim in enumerate(shape):
        if dim < 1 and dim != WILDCARD:
            p.add(f"{field}.reshape.shape[{j}]", f"{dim} is not >= 1 or -1")
            return
    dims = list(io.dims)
    size_dims, size_shape = _element_count(dims), _element_count(shape)
    # An empty reshape stands for one element: dims must hold exactly 1.
    if size_dims != size_shape and (size_shape != 0 or size_dims != 1):
        p.add(f"{field}.reshape", f"{shape} holds another element count than dims {dims} (Triton: different size)")
        return
    if size_dims == WILDCARD:
        runs_dims, runs_shape = _runs(dims), _runs(shape)
        if len(runs_dims) != len(runs_shape):
            p.add(f"{field}.reshape", f"{shape} has another number of -1 dims than dims {dims}")
        elif runs_dims != runs_shape:
            p.add(f"{field}.reshape", f"{shape}: the fixed dims between -1s hold other counts than dims {dims}")


def _element_count(dims: list[int]) -> int:
    """triton::common::GetElementCount: -1 when any dim is variable, 0 for an empty shape."""
    if not dims:
        return 0
    count = 1
    for d in dims:
        if d == WILDCARD:
            return WILDCARD
        count *= d
    return count


def _runs(dims: list[int]) -> list[int]:
    """The element count of each run of fixed dims between variable ones ([2, 4, -1, 6] -> [8, 6])."""
    runs, current = [], 1
    for d in dims:
        if d == WILDCARD:
            runs.append(current)
            current = 1
        else:
            current *= d
    return runs + [current]


def check_batch_io(config: Any, p: Problems) -> None:
    """core `ValidateBatchIO` (model_config_utils.cc): batch inputs and outputs name one known source input
    (and batch outputs known, distinct targets); batch input types are INT32 or FP32."""
    pb = proto.model_config_pb2()
    inputs, outputs = {io.name for io in config.input}, {io.name for io in config.output}
    allowed = (pb.TYPE_INT32, pb.TYPE_FP32)
    for i, batch in enumerate(config.batch_input):
        field = f"batch_input[{i}]"
        kind = pb.BatchInput.Kind.Name(batch.kind)
        if len(batch.source_input) != 1:
            p.add(f"{field}.source_input", f"kind {kind} expects 1 source input, got {len(batch.source_input)}")
        if batch.data_type not in allowed:
            p.add(f"{field}.data_type", f"{pb.DataType.Name(batch.data_type)}: must be TYPE_INT32 or TYPE_FP32")
        for name in batch.source_input:
            if name not in inputs:
                p.add(f"{field}.source_input", f"unknown source input name {name!r}")
    for i, batch in enumerate(config.batch_output):
        field = f"batch_output[{i}]"
        if len(batch.source_input) != 1:
            kind = pb.BatchOutput.Kind.Name(batch.kind)
            p.add(f"{field}.source_input", f"kind {kind} expects 1 source input, got {len(batch.source_input)}")
        for name in batch.source_input:
            if name not in inputs:
                p.add(f"{field}.source_input", f"unknown source input name {name!r}")
        seen: set[str] = set()
        for name in batch.target_name:
            if name not in outputs:
                p.add(f"{field}.target_name", f"unknown target output name {name!r}")
            elif name in seen:
                p.add(f"{field}.target_name", f"target output name {name!r} can only be given once")
            seen.add(name)
