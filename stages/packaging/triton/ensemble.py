"""L1: ensembles, re-implemented from Triton core.

`check_ensemble_config` follows `ValidateEnsembleSchedulingConfig` and `BuildEnsembleGraph`
(model_config_utils.cc): the config alone (platform, no instance groups, optimization or warmup, steps that
name a model and map inputs and outputs, no tensor produced twice, every ensemble input used, every output
written, no dangling tensor). `check_ensemble_steps` follows `ValidateEnsembleConfig` and
`ValidateTensorMapping` (ensemble_scheduler/ensemble_utils.cc): the ensemble against the configs of the
models it calls, found in the same repository (a step's model that is not there is a problem too: Triton
would fail to load the ensemble).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from stages.packaging.triton import proto
from stages.packaging.triton.core import ENSEMBLE, Identity
from stages.packaging.triton.parse import Problems


@dataclass
class _Tensor:
    produced: bool = False
    ready: bool = False
    prev: list[str] = field(default_factory=list)
    next: list[str] = field(default_factory=list)


def check_ensemble_config(config: Any, ident: Identity, p: Problems) -> None:
    """Every rule of core `ValidateEnsembleSchedulingConfig` `config` breaks, added to `p`."""
    if ident.platform != ENSEMBLE:
        what = f"platform {ident.platform!r}" if ident.platform else f"backend {ident.backend!r}"
        p.add("ensemble_scheduling", f"set on a model of {what}: only platform 'ensemble' takes it")
        return
    if config.instance_group:
        p.add("instance_group", "an ensemble takes no instance groups")
    if config.HasField("optimization"):
        p.add("optimization", "an ensemble takes no optimization")
    if config.model_warmup:
        p.add("model_warmup", "an ensemble takes no model_warmup")
    steps = config.ensemble_scheduling.step
    if not steps:
        p.add("ensemble_scheduling.step", "missing (Triton: must specify 'step')")
        return
    tensors: dict[str, _Tensor] = {}
    for i, step in enumerate(steps):
        where = f"ensemble_scheduling.step[{i}]"
        for name, what in (
            ("model_name", step.model_name),
            ("input_map", step.input_map),
            ("output_map", step.output_map),
        ):
            if not what:
                p.add(f"{where}.{name}", "missing")
                return
        produced = []
        for tensor in step.output_map.values():
            node = tensors.setdefault(tensor, _Tensor())
            if node.produced:
                p.add(f"{where}.output_map", f"ensemble tensor {tensor!r} is produced by more than one step")
                return
            node.produced = True
            produced.append(tensor)
        for tensor in step.input_map.values():
            tensors.setdefault(tensor, _Tensor())
            for out in produced:
                tensors[out].prev.append(tensor)
                tensors[tensor].next.append(out)
    _check_flow(config, tensors, p)


def _check_flow(config: Any, tensors: dict[str, _Tensor], p: Problems) -> None:
    """The data-flow half of `ValidateEnsembleSchedulingConfig`: inputs used, outputs written, nothing unused."""
    queue = []
    for i, io in enumerate(config.input):
        if io.name not in tensors:
            p.add(f"input[{i}]", f"ensemble input {io.name!r} is not used by any step")
            return
        tensors[io.name].ready = True
        queue.append(io.name)
    while queue:
        for nxt in tensors[queue.pop(0)].next:
            node = tensors[nxt]
            if not node.ready and all(tensors[prev].ready for prev in node.prev):
                node.ready = True
                queue.append(nxt)
    outputs = set()
    for i, io in enumerate(config.output):
        if io.name not in tensors:
            p.add(f"output[{i}]", f"ensemble output {io.name!r} is not produced by any step")
            return
        if not tensors[io.name].ready:
            p.add(
                f"output[{i}]", f"ensemble output {io.name!r} is not written (a tensor it depends on is not connected)"
            )
            return
        outputs.add(io.name)
    for name, node in tensors.items():
        if name not in outputs and (not node.ready or not node.next):
            p.add("ensemble_scheduling", f"ensemble tensor {name!r} is unused")
            return


def check_ensemble_steps(config: Any, configs: Mapping[str, Any], p: Problems) -> None:
    """core `ValidateEnsembleConfig` / `ValidateTensorMapping` (ensemble_utils.cc): each step's model is in
    the repository, batches at least as large as the ensemble, and every mapped tensor exists in it with one
    data type and a shape that agrees (dims, or the full shape with the batch dim) across steps."""
    if not config.HasField("ensemble_scheduling"):
        return
    pb = proto.model_config_pb2()
    mbs = config.max_batch_size
    seen: dict[str, tuple[int, list[int], list[int], str]] = {}  # tensor -> dtype, dims, full dims, from

    def note(tensor: str, dtype: int, dims: list[int], batching: bool, source: str, where: str) -> None:
        full = ([-1] if batching else []) + dims
        if tensor not in seen:
            seen[tensor] = (dtype, dims, full, source)
            return
        other_type, other_dims, other_full, other = seen[tensor]
        if dtype != other_type:
            p.add(
                where,
                f"ensemble tensor {tensor!r}: {pb.DataType.Name(dtype)} from {source}, "
                f"{pb.DataType.Name(other_type)} from {other}",
            )
        elif not (_agree(dims, other_dims) or _agree(full, other_full)):
            p.add(where, f"ensemble tensor {tensor!r}: shape {full} from {source}, {other_full} from {other}")

    for io in list(config.input) + list(config.output):
        dims = list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)
        note(io.name, io.data_type, dims, mbs > 0, "the ensemble", "ensemble_scheduling")
    for i, step in enumerate(config.ensemble_scheduling.step):
        where = f"ensemble_scheduling.step[{i}]"
        member = configs.get(step.model_name)
        if not step.model_name:
            continue  # said by check_ensemble_config
        if member is None:
            p.add(f"{where}.model_name", f"{step.model_name!r} is not a model of this repository")
            continue
        if member.max_batch_size != 0 and member.max_batch_size < mbs:
            p.add(
                "max_batch_size",
                f"{mbs} > {member.max_batch_size}, the max_batch_size of step model {step.model_name!r}",
            )
        batching = member.max_batch_size > 0
        inputs = {io.name: io for io in member.input}
        outputs = {io.name: io for io in member.output}
        for name, tensor in step.input_map.items():
            if name not in inputs:
                p.add(f"{where}.input_map", f"{name!r} is not an input of {step.model_name!r}")
            else:
                io = inputs[name]
                note(tensor, io.data_type, list(io.dims), batching, step.model_name, f"{where}.input_map")
        for name, io in inputs.items():
            if name not in step.input_map and not io.optional:
                p.add(f"{where}.input_map", f"input {name!r} of {step.model_name!r} is not mapped")
        for name, tensor in step.output_map.items():
            if name not in outputs:
                p.add(f"{where}.output_map", f"{name!r} is not an output of {step.model_name!r}")
            else:
                io = outputs[name]
                note(tensor, io.data_type, list(io.dims), batching, step.model_name, f"{where}.output_map")


def _agree(a: list[int], b: list[int]) -> bool:
    """triton::common::CompareDimsWithWildcard: same rank, each pair equal or either -1."""
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))
