"""The gate table drives everything that names a gate: defaults per role and precision, param checking,
the README section, and the one-sample-flip warning."""

from __future__ import annotations

import re

import pytest

from pipeline.schema import ROLES
from stages.validate import Validate
from stages.validation import gates as G
from stages.validation.gate_eval import evaluate, one_sample_decides
from stages.validation.gate_result import check_gate


def test_every_default_gate_fits_its_role_and_every_role_gets_finite_and_shape() -> None:
    for precision in ("f32", "bf16", "int8"):
        for role in ROLES:
            gates = G.default_gates(precision, role)
            assert gates["finite"] is True and gates["shape"] is True
            assert all(G.applies(name, role) for name in gates), (precision, role, gates)
    assert "top1_agreement_min" not in G.default_gates("int8", "regression")
    assert G.default_gates("int8", "embedding")["cosine_min"] == 0.95
    assert G.default_gates("int8", "dense")["iou_min"] == 0.8
    assert G.default_gates("int8", "classification")["accuracy_drop_max"] == 0.02


def test_the_readme_section_lists_every_gate_and_every_default_value() -> None:
    text = G.gate_reference()
    rows = [ln for ln in text.splitlines() if ln.startswith("| `")]
    assert [re.match(r"\| `(\w+)`", ln).group(1) for ln in rows] == list(G.GATES)
    for g in G.TABLE:
        row = next(ln for ln in rows if ln.startswith(f"| `{g.name}`"))
        for per_role in g.defaults.values():
            for value in per_role.values():
                assert ("on" if value is True else f"{value:g}") in row, (g.name, value)
    assert all(ln.count(" | ") == 6 for ln in rows)  # a '|' inside a description would add a column


def test_params_accept_exactly_the_table_names() -> None:
    for name in G.GATES:
        value = True if name in G.BOOL_GATES else 0.5
        assert Validate.Params.model_validate({"gates": {name: value}}).gates == {name: value}
    with pytest.raises(ValueError, match="unknown gate"):
        Validate.Params.model_validate({"gates": {"iou": 0.5}})
    description = Validate.Params.model_fields["gates"].description
    assert all(name in description for name in G.GATES)


def entry(role: str, figures: dict, counts: dict | None = None) -> dict:
    return {
        "role": role,
        "figures": {"shape": True, "finite": True, **figures},
        "counts": counts or {},
        "worst": [],
        "insensitive": None,
    }


def test_one_sample_flip_is_warned_about() -> None:
    counts = {"accuracy": {"successes": 6, "n": 7}, "reference_accuracy": {"successes": 6, "n": 7}}
    outputs = {"logits": entry("classification", {"accuracy": 6 / 7, "accuracy_drop": 0.0}, counts)}
    verdicts = evaluate({"accuracy_min": 0.8}, {}, "int8", outputs, {}, {})
    assert {r.metric: r.passed for r in verdicts.results}["accuracy_min"]
    assert verdicts.warnings == ("gate accuracy_min on logits: one sample decides it (n=7)",)  # 5/7 = 0.71 < 0.8
    assert evaluate({"accuracy_min": 0.5}, {}, "int8", outputs, {}, {}).warnings == ()  # 5/7 still passes 0.5
    drop = check_gate("accuracy_drop_max", "logits", 0.0, 0.1)
    assert one_sample_decides("accuracy_drop_max", drop, counts) == 7  # one more miss: drop 1/7 > 0.1
    assert one_sample_decides("accuracy_drop_max", check_gate("accuracy_drop_max", "l", 0.0, 0.2), counts) is None
    failed = check_gate("top1_agreement_min", "logits", 0.8, 0.85)
    assert one_sample_decides("top1_agreement_min", failed, {"top1_agreement": {"successes": 8, "n": 10}}) == 10


def test_defaults_follow_each_outputs_role() -> None:
    outputs = {
        "logits": entry("classification", {"top1_agreement": 1.0, "accuracy_drop": None, "cosine": 0.5}),
        "emb": entry("embedding", {"cosine": 0.97, "rel_error": 0.1, "top1_agreement": None}),
    }
    verdicts = evaluate(None, {}, "int8", outputs, {}, {})
    by = {(r.output, r.metric): r for r in verdicts.results}
    assert by[("logits", "top1_agreement_min")].passed and ("logits", "cosine_min") not in by
    assert by[("emb", "cosine_min")].passed and by[("emb", "rel_error_max")].passed
    assert ("emb", "top1_agreement_min") not in by and ("logits", "accuracy_drop_max") not in by  # no labels


def test_a_default_gate_that_fits_but_cannot_be_computed_is_not_evaluated_and_said() -> None:
    outputs = {
        "map": entry("dense", {"centered_cosine": None, "iou": 1.0}),
        "logits": entry("classification", {"top1_agreement": 1.0, "centered_cosine": 1.0, "accuracy_drop": None}),
    }
    verdicts = evaluate(None, {}, "int8", outputs, {}, {})
    assert ("map", "centered_cosine_min") not in {(r.output, r.metric) for r in verdicts.results}
    assert "centered_cosine_min" not in outputs["map"]["gates"] and "iou_min" in outputs["map"]["gates"]
    assert outputs["map"]["not_evaluated"] == {"centered_cosine_min": "the figure could not be computed"}
    said = "default gate centered_cosine_min on map was not evaluated: the figure could not be computed"
    assert verdicts.warnings == (said,)
    # the accuracy-drop gate is on only with labels: off without a word, and not listed as applied
    assert outputs["logits"]["not_evaluated"] == {} and "accuracy_drop_max" not in outputs["logits"]["gates"]


def test_a_gate_that_fits_no_role_advises_only_the_settings_that_would_help() -> None:
    """'set model.roles or labels_output' only while both could change the role; never a setting already made."""

    def skipped(gates: dict, declared: dict | None = None, labels_output: str | None = None) -> list[str]:
        outputs = {
            "logits": entry("classification", {"top1_agreement": 1.0}),
            "boxes": entry("regression", {"top1_agreement": None, "iou": None}),
        }
        verdicts = evaluate(gates, {}, "int8", outputs, {}, {}, declared=declared, labels_output=labels_output)
        return [w for w in verdicts.warnings if "does not apply" in w]

    top1 = {"top1_agreement_min": 0.9}
    neither = "gate top1_agreement_min does not apply to boxes: it applies to classification outputs, not regression"
    assert skipped(top1) == [neither + " (set model.roles or labels_output)"]
    assert skipped(top1, labels_output="logits") == [neither + " (set model.roles)"]  # labels_output is set
    assert skipped(top1, declared={"boxes": "regression"}, labels_output="logits") == [neither]  # both are set
    assert skipped(top1, declared={"boxes": "regression"}) == [neither]  # boxes' role is declared, not guessed
    # labels_output can only make an output classification: it is no advice for a dense gate
    outputs = {"boxes": entry("regression", {"iou": None})}
    results = evaluate({"iou_min": 0.5}, {}, "int8", outputs, {}, {}).results
    assert [r.note for r in results if r.metric == "iou_min"] == [
        "no output could be evaluated: it applies to dense outputs, not regression (set model.roles)"
    ]
