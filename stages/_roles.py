"""What each output means (its role), which decides the figures and default gates it gets.

The rule (the README states it word for word):
1. a role declared in `model.roles` wins;
2. the output labels score (`labels_output`, or, when the data has labels, the
   first (batch, C) output) is classification;
3. otherwise by rank: rank >= 4 (batch, C, H, W) is dense, rank 3
   (batch, seq, hidden) is embedding, anything else (e.g. (batch, C) without
   labels) is regression.
An output of shape (batch, C) with no labels is not assumed to be a classifier:
top-1 agreement on box offsets or landmarks means nothing.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from pipeline.errors import did_you_mean
from pipeline.schema import ROLES


def infer_role(output_name: str, declared: Mapping[str, str], reference_shape: tuple[int, ...],
               is_labels_output: bool) -> str:
    """The role of one output by the rule above; `reference_shape` is a batch of its reference outputs."""
    if output_name in declared:
        return declared[output_name]
    if is_labels_output:
        return "classification"
    rank = len(reference_shape)
    if rank >= 4:
        return "dense"
    if rank == 3:
        return "embedding"
    return "regression"


def check_declared(declared: Mapping[str, str], outputs: Sequence[str]) -> None:
    """A `model.roles` entry naming no output (or an unknown role) is one clear line."""
    for name, role in declared.items():
        if name not in outputs:
            raise ValueError(f"model.roles: {name!r} is not an output of the reference"
                             f"{did_you_mean(name, list(outputs))} (outputs: {', '.join(outputs)})")
        if role not in ROLES:
            raise ValueError(f"model.roles.{name}: unknown role {role!r} (roles: {', '.join(ROLES)})")


def labels_output(wanted: str | None, names: Sequence[str], first_shapes: Mapping[str, tuple[int, ...]],
                  has_labels: bool) -> str | None:
    """The output labels score: `labels_output` if given, else with labels the first (batch, C>=2) output."""
    if wanted is not None:
        if wanted not in names:
            raise ValueError(f"labels_output {wanted!r} is not an output{did_you_mean(wanted, list(names))}")
        return wanted
    if not has_labels:
        return None
    return next((o for o in names if len(first_shapes.get(o, ())) == 2 and first_shapes[o][1] >= 2), None)
