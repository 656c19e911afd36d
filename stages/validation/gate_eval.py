"""validate's gates: which apply to each output (its role, the precision, the recipe), and their verdicts.

Without `gates:` each output gets the table's defaults for its role and the
candidate's precision class; with `gates:` exactly those apply to every output
they fit (finite and shape stay on unless false), and `per_output` overrides
them. A gate that does not fit an output's role (top-1 agreement on a regression
output) is never applied to it: given for every output it is skipped there (and
fails only if no output could be evaluated); given for that output by
`per_output`, it fails and says why. A proportion gate that one sample's flip
would turn is warned about.

A default gate never vanishes silently: one that fits the output's role but whose
figure could not be computed (top-1 agreement of a one-column "classifier") is
left out of the output's applied gates, listed under `not_evaluated` with the
reason, and warned about. Only the accuracy gates stay quietly off without labels
(they are on "when the data has labels").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from stages.validation import gates as G
from stages.validation.gate_result import GateResult, check_gate, passes


@dataclass(frozen=True)
class Verdicts:
    """Every gate's verdict, in the order evaluated, and what the evaluation warns about (a default gate not
    evaluated, a gate one sample decides or the reference's insensitivity makes uninformative, a gate that
    fits some outputs' roles and not others)."""

    results: tuple[GateResult, ...]
    warnings: tuple[str, ...]

    @property
    def passed(self) -> list[GateResult]:
        return [g for g in self.results if g.passed]

    @property
    def failures(self) -> list[str]:
        """Each failed gate as the one line GateFailed lists."""
        return [g.failure() for g in self.results if not g.passed]


def evaluate(
    gates: dict[str, Any] | None,
    per_output: dict[str, dict[str, Any]],
    precision: str,
    outputs: dict[str, dict[str, Any]],
    points: dict[str, Any],
    uninformative: Mapping[str, frozenset[str]],
    declared: Mapping[str, str] | None = None,
    labels_output: str | None = None,
) -> Verdicts:
    """Every gate's verdict; `outputs[o]` holds role, figures, counts, worst; `entry['gates']` is filled in.
    `uninformative[o]`: the gates the reference's insensitivity makes uninformative on output o. `declared`
    (model.roles) and `labels_output` (as the recipe sets it) only shape the advice given when a gate fits no
    output's role."""
    hint = RoleHint(dict(declared or {}), labels_output)
    warnings: list[str] = []
    user_set = gates is not None
    results: list[GateResult] = []
    not_applicable: dict[str, list[str]] = {}
    evaluated: set[str] = set()
    for o, entry in outputs.items():
        figs, role = entry["figures"], entry["role"]
        base = dict(gates) if gates is not None else G.default_gates(precision, role)
        if user_set:
            base.setdefault("finite", True)
            base.setdefault("shape", True)
        override = per_output.get(o, {})
        resolved = G.resolve_gates(base, override, figs.get("output_scale"))
        entry["gates"] = resolved
        entry["not_evaluated"] = {}
        merged = {**base, **override}
        for metric, threshold in list(resolved.items()):
            gate = G.GATES[metric]
            if not G.applies(metric, role):
                if metric in override:
                    results.append(check_gate(metric, o, None, threshold, f"does not apply to a {role} output"))
                elif user_set:
                    not_applicable.setdefault(metric, []).append(o)
                continue
            observed, note = figs.get(gate.figure), _note(metric, entry, merged)
            if observed is None and figs.get("shape") is not False:
                if metric in override:
                    note = why_na(metric)
                elif user_set:
                    not_applicable.setdefault(metric, []).append(o)
                    continue
                else:  # a default gate whose figure this output lacks: said, not dropped
                    del entry["gates"][metric]
                    if not metric.startswith("accuracy"):  # on only when the data has labels
                        entry["not_evaluated"][metric] = why_na(metric)
                        warnings.append(f"default gate {metric} on {o} was not evaluated: {why_na(metric)}")
                    continue
            elif observed is None:
                note = note or "not computed: the shape check failed"
            evaluated.add(metric)
            result = check_gate(metric, o, observed, threshold, note)
            if result.passed and metric in G.PER_SAMPLE:
                result = check_gate(metric, o, observed, threshold)  # the worst sample is news only on failure
            results.append(result)
            flip = one_sample_decides(metric, result, entry.get("counts", {}))
            if flip:
                warnings.append(f"gate {metric} on {o}: one sample decides it (n={flip})")
            if metric in uninformative.get(o, frozenset()):
                warnings.append(f"gate {metric} on {o} is uninformative: {entry['insensitive']}")
        for point, info in points.items():
            for key in ("shape", "finite"):
                if key in resolved and "outputs" in info and o in info["outputs"]:
                    po = info["outputs"][o]
                    note = po["error"] or (
                        f"{po['candidate_shape']} vs reference {po['reference_shape']}" if key == "shape" else ""
                    )
                    results.append(check_gate(key, f"{o} @{point}", po[key], True, note))
    for metric, outs in not_applicable.items():
        if metric in evaluated:
            warnings.append(
                f"gate {metric} does not apply to {', '.join(outs)}: " + _why_skipped(metric, outputs, outs, hint)
            )
        else:
            assert gates is not None  # not_applicable is filled only when the recipe sets gates
            results.append(
                check_gate(
                    metric,
                    ", ".join(outs),
                    None,
                    gates[metric],
                    "no output could be evaluated: " + _why_skipped(metric, outputs, outs, hint),
                )
            )
    return Verdicts(tuple(results), tuple(warnings))


def _note(metric: str, entry: dict[str, Any], merged: dict[str, Any]) -> str:
    figs = entry["figures"]
    if metric == "max_abs" and merged.get("max_abs") is None and merged.get("max_abs_rel") is not None:
        return f"{merged['max_abs_rel']:g} x max|reference| {figs.get('output_scale') or 0:.3g}"
    if metric == "shape" and figs.get("note"):
        return figs["note"]
    if metric in G.PER_SAMPLE:
        figure = G.GATES[metric].figure
        if figure in entry.get("dataset_level", []):
            return "over all samples stacked: too few elements per sample"
        worst = next((w for w in entry.get("worst", []) if w["figure"] == figure), None)
        if worst is not None:
            return f"worst: sample {worst['index']} ({worst['group']})"
    return ""


def one_sample_decides(metric: str, result: GateResult, counts: dict[str, dict[str, int]]) -> int | None:
    """n when flipping one sample would turn this proportion gate's verdict, else None."""
    gate = G.GATES[metric]
    if not gate.proportion or not isinstance(result.observed, float) or not isinstance(result.threshold, float):
        return None
    if metric == "accuracy_drop_max":
        cand, ref = counts.get("accuracy"), counts.get("reference_accuracy")
        if not cand or not ref:
            return None
        n, step = cand["n"], 1 if result.passed else -1  # one more wrong candidate sample, or one fewer
        flipped = (ref["successes"] - (cand["successes"] - step)) / n
    else:
        c = counts.get(gate.figure)
        if not c:
            return None
        n = c["n"]
        flipped = (c["successes"] + (-1 if result.passed else 1)) / n
    return n if passes(metric, flipped, result.threshold) != result.passed else None


def why_na(metric: str) -> str:
    if metric.startswith("accuracy"):
        return "the dataset has no labels, or this is not the output labels score"
    if metric in ("top1_agreement_min", "top5_agreement_min"):
        return "the output is not (batch, classes) with enough classes"
    return "the figure could not be computed"


@dataclass(frozen=True)
class RoleHint:
    """What the recipe already says about roles, so the advice for a gate that fits no role is true."""

    declared: dict[str, str]  # model.roles
    labels_output: str | None  # validate's labels_output param, None when left to the default

    def advice(self, metric: str, outs: list[str]) -> str:
        """` (set model.roles or labels_output)`, less what is set already; empty when every role was declared.

        labels_output is offered only for a classification gate (it makes its output classification) and
        only when unset: once set, naming another output would take labels away from the one it names."""
        if all(o in self.declared for o in outs):
            return ""
        knobs = ["model.roles"]
        if self.labels_output is None and "classification" in G.GATES[metric].roles:
            knobs.append("labels_output")
        return f" (set {' or '.join(knobs)})"


def _why_skipped(metric: str, outputs: dict[str, dict[str, Any]], outs: list[str], hint: RoleHint) -> str:
    roles = {outputs[o]["role"] for o in outs}
    if not any(G.applies(metric, r) for r in roles):
        return (
            f"it applies to {', '.join(G.GATES[metric].roles)} outputs, not {', '.join(sorted(roles))}"
            + hint.advice(metric, outs)
        )
    return why_na(metric)
