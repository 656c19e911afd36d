"""L1: the sequence batcher's part of Triton core's `ValidateModelConfig` (model_config_utils.cc).

Control tensors (`GetBooleanSequenceControlProperties`, `GetTypedSequenceControlProperties`): each named,
each tensor for one control kind, each kind at most once; START/END/READY take exactly one of
int32/fp32/bool_false_true with 2 entries, CORRID takes none of them and an integer or string type. The
oldest strategy's preferred sizes lie in (0, max_batch_size], the direct strategy's minimum slot utilization
in [0, 1], and the response cache does not work with the sequence batcher.
"""

from __future__ import annotations

from typing import Any

from stages.packaging.triton import proto
from stages.packaging.triton.core import Identity
from stages.packaging.triton.parse import Problems

_PAIRS = ("int32_false_true", "fp32_false_true", "bool_false_true")
_CORRID_TYPES = ("TYPE_UINT64", "TYPE_INT64", "TYPE_UINT32", "TYPE_INT32", "TYPE_STRING")


def check_sequence_batching(config: Any, ident: Identity, p: Problems) -> None:
    """Every sequence-batching rule `config` breaks, added to `p`."""
    if not config.HasField("sequence_batching"):
        return
    batcher = config.sequence_batching
    if config.response_cache.enable:
        p.add("response_cache.enable", "the response cache does not support the sequence batcher (Triton rejects it)")
    pb = proto.model_config_pb2()
    kinds = pb.ModelSequenceBatching.Control
    seen_tensors: set[str] = set()
    seen_kinds: set[int] = set()
    for i, control_input in enumerate(batcher.control_input):
        field = f"sequence_batching.control_input[{i}]"
        if not control_input.name:
            p.add(f"{field}.name", "a control tensor must have a name")
            continue
        if control_input.name in seen_tensors:
            p.add(f"{field}.name", f"{control_input.name!r} is given for more than one control kind")
        seen_tensors.add(control_input.name)
        for j, control in enumerate(control_input.control):
            where = f"{field}.control[{j}]"
            kind = kinds.Kind.Name(control.kind)
            if control.kind in seen_kinds:
                p.add(where, f"{kind} is given by more than one tensor")
            seen_kinds.add(control.kind)
            given = [name for name in _PAIRS if len(getattr(control, name))]
            if control.kind == kinds.CONTROL_SEQUENCE_CORRID:
                if given:
                    p.add(where, f"{kind} takes none of {', '.join(_PAIRS)}, got {given[0]}")
                elif pb.DataType.Name(control.data_type) not in _CORRID_TYPES:
                    p.add(
                        f"{where}.data_type",
                        f"{pb.DataType.Name(control.data_type)}: {kind} takes one of {', '.join(_CORRID_TYPES)}",
                    )
            elif control.kind in (
                kinds.CONTROL_SEQUENCE_START,
                kinds.CONTROL_SEQUENCE_END,
                kinds.CONTROL_SEQUENCE_READY,
            ):
                if len(given) != 1:
                    p.add(where, f"{kind} takes exactly one of {', '.join(_PAIRS)}, got {len(given)}")
                elif len(getattr(control, given[0])) != 2:
                    p.add(f"{where}.{given[0]}", f"must have exactly 2 entries, got {len(getattr(control, given[0]))}")
    if batcher.HasField("oldest"):
        for i, size in enumerate(batcher.oldest.preferred_batch_size):
            field = f"sequence_batching.oldest.preferred_batch_size[{i}]"
            if size <= 0:
                p.add(field, f"{size} is not positive")
            elif size > config.max_batch_size:
                p.add(field, f"{size} > max_batch_size {config.max_batch_size}")
    if batcher.HasField("direct"):
        utilization = batcher.direct.minimum_slot_utilization
        if not 0.0 <= utilization <= 1.0:
            p.add("sequence_batching.direct.minimum_slot_utilization", f"{utilization} is not in (0.0, 1.0]")
