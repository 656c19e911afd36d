"""What each output means (its role), which decides the figures and default gates it gets.

The rule (the README states it word for word):
1. a role declared in `model.roles` wins;
2. the output labels score is classification: `labels_output` if given; else,
   when the data has labels, the one output declared classification in
   `model.roles` (several: `labels_output` must say which), else the first
   (batch, C) output not declared with another role;
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


def infer_role(
    output_name: str, declared: Mapping[str, str], reference_shape: tuple[int, ...], is_labels_output: bool
) -> str:
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
            raise ValueError(
                f"model.roles: {name!r} is not an output of the reference"
                f"{did_you_mean(name, list(outputs))} (outputs: {', '.join(outputs)})"
            )
        if role not in ROLES:
            raise ValueError(f"model.roles.{name}: unknown role {role!r} (roles: {', '.join(ROLES)})")


class AmbiguousLabelsOutput(ValueError):
    """Several outputs are declared classification and the recipe did not say which one labels score."""


def labels_output(
    wanted: str | None,
    names: Sequence[str],
    first_shapes: Mapping[str, tuple[int, ...]],
    has_labels: bool,
    declared: Mapping[str, str] | None = None,
    param: str = "labels_output",
) -> str | None:
    """The output labels score by rule 2 above; `param` names the setting an error tells the user to set."""
    declared = declared or {}
    if wanted is not None:
        if wanted not in names:
            raise ValueError(f"{param} {wanted!r} is not an output{did_you_mean(wanted, list(names))}")
        if declared.get(wanted, "classification") != "classification":
            raise ValueError(
                f"{param} {wanted!r} is declared {declared[wanted]} in model.roles: labels score a "
                "classification output"
            )
        return wanted
    if not has_labels:
        return None
    classifiers = [o for o in names if declared.get(o) == "classification"]
    if len(classifiers) > 1:
        raise AmbiguousLabelsOutput(
            f"{param}: several outputs are declared classification in model.roles "
            f"({', '.join(classifiers)}): set {param} to the one the labels score"
        )
    if classifiers:
        return classifiers[0]
    return next(
        (o for o in names if o not in declared and len(first_shapes.get(o, ())) == 2 and first_shapes[o][1] >= 2), None
    )
