"""Which built engines become which Triton model, under which name, with which files and config.

Grouping: TensorRT plans whose I/O (names, dtypes, dims, profiles) and precision are equal and that differ only
in the GPU they were built for are one model, each plan under its own name (`model.<GPU>.plan`, or
`model.sm<cc>.plan` when no GPU was declared) and `cc_model_filenames` mapping each plan's compute capability
to it (two different plans for one capability are an error: Triton would serve one of them). Every other
engine is a model of its own.

Names (`names` overrides any): the member's label with every character other than letters, digits and `_`
turned to `_` ("engine@openvino-fp32" -> "engine_openvino_fp32"; a path keeps its stem); a TensorRT group's
label loses its GPU part first, the accelerator engine.json records ("trt@fp16-T4" -> "trt_fp16").

max_batch_size (when not given): when every input and output of the engine has a dynamic first dim, the
largest batch it takes (the smallest input's profile max, or range upper end) and dims without the first
dim; an unbounded batch ("?", "1..") gets Triton's own default for auto-completed configs, 4 (the backends'
`default-max-batch-size`); else 0 and dims are the full shape.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from stages.packaging.members import Member
from stages.packaging.triton import dtypes, proto
from stages.packaging.triton.backends import engine_max_batch
from stages.packaging.triton.layout import ModelFolder

UNBOUNDED_BATCH = 4  # Triton's --backend-config=default-max-batch-size default
_RANGE = re.compile(r"^(\d*)\.\.(\d*)$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_IR_FILES = ("model.xml", "model.bin")


@dataclass(frozen=True)
class ServedFile:
    """A file of a model's version folder: its name there, what it is copied from, the engine it is."""

    name: str
    source: Path
    member: Member | None  # None for a file that rides along (an IR's .bin)


@dataclass(frozen=True)
class ModelPlan:
    """One model of the repository: its members, files, decisions and config text."""

    name: str
    members: tuple[Member, ...]
    files: tuple[ServedFile, ...]
    version: int
    max_batch_size: int
    instance_kind: str  # KIND_CPU or KIND_GPU
    instance_count: int
    default_file: str
    config: str  # config.pbtxt's text
    notes: tuple[str, ...] = field(default=())  # the decisions a reader may question, one line each
    warnings: tuple[str, ...] = field(default=())  # what may make the served model other than the one checked
    inference_precision: str | None = None  # OpenVINO: what the config pins (bf16), or None: the CPU's default

    @property
    def backend(self) -> str:
        return self.members[0].backend

    def folder(self) -> ModelFolder:
        """The model folder as the checks see it, before anything is written."""
        return ModelFolder(self.name, self.config, {str(self.version): frozenset(f.name for f in self.files)})

    def served_members(self) -> dict[str, Member]:
        """The engine each served file is, keyed by its path in the repository."""
        return {f"{self.name}/{self.version}/{f.name}": f.member for f in self.files if f.member is not None}


def plan_models(
    members: Sequence[Member],
    names: Mapping[str, str],
    max_batch_size: int | None,
    instance_count: int,
    dynamic_batching: Mapping[str, Any] | None,
    version: int,
) -> tuple[list[ModelPlan], list[str]]:
    """The models `members` make, in recipe order, and the problems that keep one from being written."""
    problems = [
        f"names: {k!r} is no member (members: {', '.join(m.label for m in members)})"
        for k in names
        if k not in {m.label for m in members}
    ]
    problems += [
        f"names: {v!r} (for {k}) is not a folder name ([A-Za-z0-9_.-])" for k, v in names.items() if not _NAME.match(v)
    ]
    groups: dict[Any, list[Member]] = {}
    for m in members:
        given = names.get(m.label)
        key = ("tensorrt", m.inputs, m.outputs, m.precision, given) if m.backend == "tensorrt" else ("one", m.label)
        groups.setdefault(key, []).append(m)
    plans: list[ModelPlan] = []
    taken: dict[str, str] = {}
    for group in groups.values():
        name = names.get(group[0].label) or default_name(group)
        if name in taken:
            problems.append(
                f"names: {taken[name]} and {group[0].label} are both model {name!r}, but their I/O, precision or "
                "backend differ (one config cannot serve both): set `names` to tell them apart"
            )
            continue
        taken[name] = group[0].label
        plan = _plan(name, group, max_batch_size, instance_count, dynamic_batching, version, problems)
        if plan is not None:
            plans.append(plan)
    return plans, problems


def default_name(group: Sequence[Member]) -> str:
    """The documented default model name of a group of members (see the module's docstring)."""
    labels = []
    for m in group:
        label = m.label
        if "/" in label or label.endswith((".onnx", ".xml")):
            label = Path(label).stem
        elif len(group) > 1 or m.backend == "tensorrt":
            label = _without_gpu(label, m.accelerator)
        labels.append(re.sub(r"[^A-Za-z0-9_]", "_", label).strip("_") or "model")
    if len(set(labels)) == 1:
        return labels[0]
    common = labels[0]
    for label in labels[1:]:
        while not label.startswith(common):
            common = common[:-1]
    return common.strip("_") or labels[0]


def _without_gpu(label: str, accelerator: str | None) -> str:
    if not accelerator:
        return label
    pattern = rf"(^|[@\-_.]){re.escape(accelerator)}(?=$|[@\-_.])"
    return re.sub(pattern, "", label, flags=re.IGNORECASE).strip("@-_.") or label


def _plan(
    name: str,
    group: list[Member],
    max_batch_size: int | None,
    instance_count: int,
    dynamic_batching: Mapping[str, Any] | None,
    version: int,
    problems: list[str],
) -> ModelPlan | None:
    where = f"{name}/config.pbtxt"
    first = group[0]
    unranked = [t.name for t in (*first.inputs, *first.outputs) if t.dims is None]
    if unranked:
        problems.append(
            f"{where}: dims: the rank of {', '.join(unranked)} is unknown in {first.label}: Triton needs it"
        )
        return None
    notes: list[str] = []
    mbs = max_batch_size if max_batch_size is not None else _max_batch(first, notes)
    files, default, cc_files = _files(name, group, problems)
    if files is None:
        return None
    kind = "KIND_GPU" if first.backend == "tensorrt" or _on_gpu(first) else "KIND_CPU"
    config: dict[str, Any] = {"name": name}
    if first.backend == "tensorrt":
        config["platform"] = "tensorrt_plan"
    else:
        config["backend"] = first.backend
    config["max_batch_size"] = mbs
    config["input"] = [_io(t, mbs) for t in first.inputs]
    config["output"] = [_io(t, mbs) for t in first.outputs]
    config["instance_group"] = [{"count": instance_count, "kind": kind}]
    warnings: list[str] = []
    pinned = None
    if first.backend == "openvino":
        config["parameters"], pinned = _openvino_parameters(first, warnings)
    config["default_model_filename"] = default
    if cc_files:
        config["cc_model_filenames"] = cc_files
    if dynamic_batching is not None:
        if mbs > 0:
            config["dynamic_batching"] = {k: v for k, v in dynamic_batching.items() if v not in (None, [], 0)}
        else:
            notes.append("dynamic_batching left out: the model does not batch (max_batch_size 0)")
    text = config_text(config, f"{name}: written by package.triton from {', '.join(m.label for m in group)}")
    return ModelPlan(
        name,
        tuple(group),
        tuple(files),
        version,
        mbs,
        kind,
        instance_count,
        default,
        text,
        tuple(notes),
        tuple(warnings),
        pinned,
    )


def _openvino_parameters(member: Member, warnings: list[str]) -> tuple[dict[str, Any], str | None]:
    """What Triton's OpenVINO backend takes of how the engine was built and checked (openvino.cc ParseParameter):
    PERFORMANCE_HINT, and HINT_BF16, its only precision setting. An engine checked at f32 or f16 cannot be pinned
    there: the backend runs OpenVINO's CPU default, bf16 on a CPU with AVX-512 BF16 or AMX."""
    info = member.info
    params: dict[str, Any] = {}
    if info is not None and info.details.get("sparse_weights_decompression_rate") is not None:
        warnings.append(
            f"runs without the sparse-weight decompression rate {member.label} was built and checked with: Triton's "
            "OpenVINO backend takes no CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE (package.ovms sets it)"
        )
    hint = info.details.get("performance_hint") if info is not None else None
    if isinstance(hint, str) and hint.lower() in ("latency", "throughput", "cumulative_throughput"):
        params["PERFORMANCE_HINT"] = {"string_value": hint.lower()}
    precision = info.inference_precision if info is not None else None
    if precision == "bf16":
        params["HINT_BF16"] = {"string_value": "yes"}
        return params, "bf16"
    warnings.append(
        f"runs at the CPU's default precision, not the {precision or 'f32'} {member.label} was checked at: Triton's "
        "OpenVINO backend pins only bf16, and the default is bf16 on a CPU with AVX-512 BF16 or AMX (package.ovms "
        "pins any precision; or build and validate with inference_precision bf16)"
    )
    return params, None


def _max_batch(member: Member, notes: list[str]) -> int:
    tensors = (*member.inputs, *member.outputs)
    if not all(t.dims and not isinstance(t.dims[0], int) for t in tensors):
        static = next(t.name for t in tensors if not t.dims or isinstance(t.dims[0], int))
        notes.append(f"max_batch_size 0: {static!r} has no dynamic first dim, so dims are the full shape")
        return 0
    largest = engine_max_batch(member.inputs)
    if largest is None:
        notes.append(f"max_batch_size {UNBOUNDED_BATCH}: the batch dim is unbounded (Triton's default-max-batch-size)")
        return UNBOUNDED_BATCH
    notes.append(f"max_batch_size {largest}: the largest batch {member.label} takes")
    return largest


def _on_gpu(member: Member) -> bool:
    return member.info is not None and member.backend == "onnxruntime" and member.info.device.device == "GPU"


def _io(tensor: Any, mbs: int) -> dict[str, Any]:
    dims = list(tensor.dims)[1:] if mbs > 0 else list(tensor.dims)
    return {
        "name": tensor.name,
        "data_type": dtypes.config_type(tensor.dtype) or "TYPE_INVALID",
        "dims": [d if isinstance(d, int) else -1 for d in dims],
    }


def _files(name: str, group: list[Member], problems: list[str]) -> tuple[list[ServedFile] | None, str, dict[str, str]]:
    """The version folder's files, the default file, and `cc_model_filenames` (TensorRT)."""
    first = group[0]
    if first.backend == "openvino":
        xml, weights = first.files
        return [ServedFile(_IR_FILES[0], xml, first), ServedFile(_IR_FILES[1], weights, None)], _IR_FILES[0], {}
    if first.backend == "onnxruntime":
        return [ServedFile("model.onnx", first.files[0], first)], "model.onnx", {}
    files: list[ServedFile] = []
    cc_files: dict[str, str] = {}
    by_cc: dict[str, tuple[Member, str]] = {}
    for m in group:
        plan = m.files[0]
        if m.compute_capability is None:
            if len(group) > 1:
                problems.append(
                    f"{name}/config.pbtxt: cc_model_filenames: {m.label}'s engine.json has no compute capability"
                )
                return None, "", {}
            return [ServedFile("model.plan", plan, m)], "model.plan", {}
        digest = hashlib.sha256(plan.read_bytes()).hexdigest()
        if m.compute_capability in by_cc:
            other, other_digest = by_cc[m.compute_capability]
            if other_digest != digest:
                problems.append(
                    f"{name}/config.pbtxt: cc_model_filenames: {other.label} ({other.accelerator or 'no GPU named'}) "
                    f"and {m.label} ({m.accelerator or 'no GPU named'}) are different plans for compute capability "
                    f"{m.compute_capability}: Triton loads one plan per compute capability (server#5164); keep one"
                )
                return None, "", {}
            continue
        by_cc[m.compute_capability] = (m, digest)
        gpu = (
            re.sub(r"[^A-Za-z0-9_-]", "_", m.accelerator)
            if m.accelerator
            else f"sm{m.compute_capability.replace('.', '')}"
        )
        files.append(ServedFile(f"model.{gpu}.plan", plan, m))
        cc_files[m.compute_capability] = f"model.{gpu}.plan"
    portable = [f for f in files if f.member and _hardware_compatible(f.member)]
    default = (portable or files)[0].name
    return files, default, cc_files


def _hardware_compatible(member: Member) -> bool:
    """A plan built with a hardware-compatibility level runs on other GPUs of its generation and later: the
    best default for a GPU `cc_model_filenames` does not name."""
    settings = (member.info.details.get("settings") or {}) if member.info else {}
    return str(settings.get("hardware_compatibility", "NONE")).upper() not in ("NONE", "")


def config_text(config: Mapping[str, Any], header: str) -> str:
    """A config built as a dict, as config.pbtxt: parsed into `inference.ModelConfig` (so a field the proto
    lacks fails here) and printed in protobuf's text format, fields in proto order, under `# header`."""
    tf = proto.text_format()
    message = proto.json_format().ParseDict(dict(config), proto.new_config())
    head = proto.new_config()
    for name in ("name", "platform", "backend"):  # who the model is, first (the text format allows any order)
        setattr(head, name, getattr(message, name))
        message.ClearField(name)
    body = tf.MessageToString(head) + tf.MessageToString(message, use_short_repeated_primitives=True)
    return f"# {header}\n{body}"


def request_shapes(plan: ModelPlan, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """The shape of each input of one request the config admits: `batch` first when the model batches, a
    dynamic dim at the profile's opt (TensorRT), a range's lower end, else 1."""
    shapes = {}
    for t in plan.members[0].inputs:
        dims = list(t.dims or ())
        start = 1 if plan.max_batch_size > 0 else 0
        shape = [batch] if start else []
        for k in range(start, len(dims)):
            d = dims[k]
            if isinstance(d, int):
                shape.append(d)
            elif t.opt is not None:
                shape.append(t.opt[k])
            else:
                match = _RANGE.match(d)
                shape.append(max(int(match.group(1)), 1) if match and match.group(1) else 1)
        shapes[t.name] = tuple(shape)
    return shapes
