"""The gate table: every gate `validate` knows, in one place that validate, its report, report.compare and
the README all read.

A gate reads one figure of one output and passes when the figure is >= (min),
<= (max) the threshold, or when the check holds (bool). It applies to the roles
listed (top-1 agreement never reads a regression output); its default depends on
the candidate's precision class (fp32 / half / int8) and the output's role, and a
role without a default value simply has no default gate. Per-sample figures
(cosine, centered cosine, relative error, IoU) are the WORST sample's; proportions
(agreement, accuracy) are dataset-level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from pipeline.schema import ROLES

PRECISIONS = ("fp32", "half", "int8")
_ALL = tuple(ROLES)
_CLS = ("classification",)
_VEC = ("regression", "embedding")


@dataclass(frozen=True)
class Gate:
    """One gate: what it reads, which way it passes, where it applies, its defaults and what it means."""

    name: str
    figure: str  # key in an output's figures
    direction: str  # "min" | "max" | "bool"
    label: str  # how a result prints: `cosine 0.981 < 0.990`
    roles: tuple[str, ...]
    description: str
    defaults: dict[str, dict[str, float | bool]] = field(default_factory=dict)  # precision -> role -> value
    unit: bool = False  # the figure lies in [0, 1]: printed with fixed decimals
    proportion: bool = False  # a share of samples: carries an interval, one sample can flip it


def _per(fp32: Mapping[str, Any], half: Mapping[str, Any], int8: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {"fp32": dict(fp32), "half": dict(half), "int8": dict(int8)}


def _each(roles: tuple[str, ...], value: Any) -> dict[str, Any]:
    return dict.fromkeys(roles, value)


TABLE: tuple[Gate, ...] = (
    Gate(
        "finite",
        "finite",
        "bool",
        "finite",
        _ALL,
        "no NaN or infinity in the candidate's outputs",
        _per(_each(_ALL, True), _each(_ALL, True), _each(_ALL, True)),
    ),
    Gate(
        "shape",
        "shape",
        "bool",
        "shape",
        _ALL,
        "the candidate's output shapes equal the reference's, at every batch and declared point",
        _per(_each(_ALL, True), _each(_ALL, True), _each(_ALL, True)),
    ),
    Gate("max_abs", "max_abs", "max", "max_abs", _ALL, "largest |candidate - reference| over every element"),
    Gate(
        "max_abs_rel",
        "max_abs",
        "max",
        "max_abs",
        _ALL,
        "max_abs relative to the output's scale (max |reference|): becomes a max_abs gate per output",
        _per(_each(_ALL, 1e-4), {}, {}),
    ),
    Gate("mean_abs", "mean_abs", "max", "mean_abs", _ALL, "mean |candidate - reference| over every element"),
    Gate(
        "cosine_min",
        "cosine",
        "min",
        "cosine",
        _ALL,
        "cosine of candidate and reference, worst sample",
        _per(_each(_VEC, 0.9999), _each(_VEC, 0.99), _each(_VEC, 0.95)),
        unit=True,
    ),
    Gate(
        "centered_cosine_min",
        "centered_cosine",
        "min",
        "centered cosine",
        _ALL,
        "cosine after removing the reference's mean over the sample's shape group, worst sample",
        _per(
            {"classification": 0.9999, "dense": 0.9999},
            {"classification": 0.99, "dense": 0.99},
            {"classification": 0.9, "dense": 0.9},
        ),
        unit=True,
    ),
    Gate(
        "rel_error_max",
        "rel_error",
        "max",
        "relative error",
        _ALL,
        "||candidate - reference|| / ||reference||, worst sample",
        _per(_each(_VEC, 1e-3), _each(_VEC, 0.05), _each(_VEC, 0.3)),
    ),
    Gate(
        "iou_min",
        "iou",
        "min",
        "IoU",
        ("dense",),
        "IoU of the two maps thresholded at `dense_threshold`, worst sample",
        _per({"dense": 0.99}, {"dense": 0.9}, {"dense": 0.8}),
        unit=True,
    ),
    Gate(
        "top1_agreement_min",
        "top1_agreement",
        "min",
        "top-1 agreement",
        _CLS,
        "share of samples where both engines pick the same class",
        _per(_each(_CLS, 0.99), _each(_CLS, 0.9), _each(_CLS, 0.9)),
        unit=True,
        proportion=True,
    ),
    Gate(
        "top5_agreement_min",
        "top5_agreement",
        "min",
        "top-5 agreement",
        _CLS,
        "share of samples whose reference class is in the candidate's top 5",
        unit=True,
        proportion=True,
    ),
    Gate(
        "accuracy_min",
        "accuracy",
        "min",
        "accuracy",
        _CLS,
        "the candidate's accuracy against the labels",
        unit=True,
        proportion=True,
    ),
    Gate(
        "accuracy_drop_max",
        "accuracy_drop",
        "max",
        "accuracy drop",
        _CLS,
        "reference accuracy - candidate accuracy (on when the data has labels)",
        _per(_each(_CLS, 0.01), _each(_CLS, 0.02), _each(_CLS, 0.02)),
        unit=True,
        proportion=True,
    ),
)
GATES: dict[str, Gate] = {g.name: g for g in TABLE}
BOOL_GATES = tuple(g.name for g in TABLE if g.direction == "bool")
# Gates whose figure is computed for every sample and gated at the worst one.
PER_SAMPLE = ("cosine_min", "centered_cosine_min", "rel_error_max", "iou_min")


def precision_class(precision: str) -> str:
    """'fp32' | 'half' | 'int8' from a runner's precision label ("f32", "bf16", "int8 (bf16 exec)", ...)."""
    p = precision.lower()
    if "int8" in p or "i8" in p.split() or "u8" in p.split():
        return "int8"
    if any(t in p for t in ("bf16", "fp16", "f16", "half")):
        return "half"
    return "fp32"


def default_gates(precision: str, role: str) -> dict[str, float | bool]:
    """The default gates of an output of `role` on a candidate of this precision (from the table)."""
    cls = precision_class(precision)
    return {g.name: g.defaults[cls][role] for g in TABLE if role in g.defaults.get(cls, {})}


def applies(gate: str, role: str) -> bool:
    return role in GATES[gate].roles


def resolve_gates(
    base: Mapping[str, Any], override: Mapping[str, Any] | None, output_scale: float | None
) -> dict[str, float | bool]:
    """The gates of one output: `base` updated with its per-output `override` (None disables a gate);
    a relative `max_abs_rel` becomes `max_abs` at this output's scale (unless an absolute one is set)."""
    gates: dict[str, Any] = dict(base)
    for k, v in (override or {}).items():
        gates[k] = v
    rel = gates.pop("max_abs_rel", None)
    if rel is not None and gates.get("max_abs") is None and "max_abs" not in (override or {}):
        if output_scale is not None:
            gates["max_abs"] = float(f"{float(rel) * max(float(output_scale), 1e-12):.3g}")
    return {k: v for k, v in gates.items() if v is not None and v is not False}


class GateValueError(ValueError):
    """A gate name or threshold a recipe got wrong; carries the gate so the error points at its key."""

    def __init__(self, gate: str, value: Any, message: str):
        super().__init__(message)
        self.gate, self.value = gate, value


def check_gate_values(gates: Any, allow_none: bool) -> Any:
    """Gate names and thresholds as a recipe writes them, checked and normalised (floats, bools)."""
    from pipeline.errors import did_you_mean

    if not isinstance(gates, dict):
        return gates  # not a mapping: the field's own type check says so
    out: dict[str, float | bool | None] = {}
    for name, value in gates.items():
        if name not in GATES:
            raise GateValueError(
                name, value, f"unknown gate{did_you_mean(str(name), list(GATES))} (gates: {', '.join(GATES)})"
            )
        if value is None and allow_none:
            out[name] = None
        elif name in BOOL_GATES:
            if not isinstance(value, bool):
                raise GateValueError(name, value, f"expected true or false (got {value!r})")
            out[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise GateValueError(name, value, f"expected a finite number (got {value!r})")
            out[name] = float(value)
    return out


def checked_gate_params(model: type, data: Any) -> Any:
    """A params model's `gates` and `per_output` as a recipe writes them, checked where they are written: an
    unknown gate or a bad threshold is a recipe error on its own key (`gates.cosine_mn`)."""
    from pipeline.schema import field_error

    if not isinstance(data, dict):
        return data
    data = dict(data)
    where: tuple[Any, ...] = ("gates",)
    try:
        if data.get("gates") is not None:
            data["gates"] = check_gate_values(data["gates"], allow_none=False)
        per_output = data.get("per_output")
        if isinstance(per_output, dict):
            checked = {}
            for name, gates in per_output.items():
                where = ("per_output", name)
                checked[name] = check_gate_values(gates, allow_none=True)
            data["per_output"] = checked
    except GateValueError as exc:
        raise field_error(model, (*where, exc.gate), exc.value, str(exc)) from None
    return data


def gate_reference() -> str:
    """The README's gate section: every gate, what it reads, where it applies, and its defaults."""
    lines = [
        "| gate | passes when | applies to | fp32 default | half (bf16/fp16) default | int8 default | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in TABLE:
        test = {"min": f"{g.figure} >= value", "max": f"{g.figure} <= value", "bool": "the check holds"}[g.direction]
        roles = "every role" if g.roles == _ALL else ", ".join(g.roles)
        cells = [_defaults_cell(g, p) for p in PRECISIONS]
        meaning = g.description.replace("|", "\\|")
        lines.append(f"| `{g.name}` | {test} | {roles} | " + " | ".join(cells) + f" | {meaning} |")
    return "\n".join(lines)


def _defaults_cell(g: Gate, precision: str) -> str:
    values = g.defaults.get(precision, {})
    if not values:
        return "—"
    by_value: dict[str, list[str]] = {}
    for role in ROLES:
        if role in values:
            v = values[role]
            by_value.setdefault("on" if v is True else f"{v:g}", []).append(role)
    if len(by_value) == 1 and len(next(iter(by_value.values()))) == len(ROLES):
        return next(iter(by_value))
    return "; ".join(f"{v} ({', '.join(r)})" for v, r in by_value.items())
