"""Each output's entry from the numerics collected on both engines: its role, figures per sample and over all
samples, the reference's sensitivity, and which gates that insensitivity makes uninformative."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stages.common import metrics as M
from stages.common.roles import check_declared, infer_role, labels_output
from stages.validation.figures import failed_entry, output_entry


@dataclass(frozen=True)
class Outputs:
    """Each output's report entry (role, figures, sensitivity, or why it has none), the output labels score, the
    gates the reference's insensitivity makes uninformative on each output, and what was warned on the way."""

    entries: dict[str, dict[str, Any]]
    labels_output: str | None
    uninformative: dict[str, frozenset[str]]
    warnings: tuple[str, ...]


def judge_outputs(
    col: Any,
    groups: list[Any],
    model: Any,
    wanted_labels_output: str | None,
    dense_threshold: float,
    min_centered_spread: float,
) -> Outputs:
    """Each output's role and figures (or why it has none), and the output labels score: what validate gates
    and what a quantization search judges its trials by, computed one way."""
    names = list(col.parts)
    check_declared(model.roles, names)
    first = {o: tuple(next(iter(parts.values())).reference[0].shape) for o, parts in col.parts.items() if parts}
    labelled = all(g.labels is not None for g in groups)
    scored = labels_output(wanted_labels_output, names, first, labelled, model.roles)
    entries: dict[str, dict[str, Any]] = {}
    uninformative: dict[str, frozenset[str]] = {}
    warnings: list[str] = []
    for o in names:
        role = infer_role(o, model.roles, tuple(first.get(o, ())), o == scored)
        if o in col.shape_notes or not col.parts[o]:
            entry = failed_entry(col.finite[o], col.shape_notes.get(o, "no batch ran"))
        else:
            entry = output_entry(list(col.parts[o].values()), role, labelled and o == scored, dense_threshold)
            entry["figures"]["finite"] = col.finite[o]
            if not entry["figures"]["reference_finite"]:
                warnings.append(f"{o}: the reference itself produced non-finite values")
        sens = entry.pop("sensitivity")
        reason = M.insensitive_reason(sens, min_centered_spread) if sens else None
        if reason:
            warnings.append(f"{o}: {reason}")
        entry.update(role=role, sensitivity=sens.as_dict() if sens else None, insensitive=reason)
        entries[o] = entry
        uninformative[o] = frozenset(M.uninformative_gates(sens, min_centered_spread) if sens else ())
    return Outputs(entries, scored, uninformative, tuple(warnings))
