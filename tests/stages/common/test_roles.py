"""The role rule, branch by branch: declared wins, the labels output is classification, then rank."""

from __future__ import annotations

import pytest

from stages.common.roles import AmbiguousLabelsOutput, check_declared, infer_role, labels_output


def test_declared_role_wins_over_everything() -> None:
    assert infer_role("out", {"out": "dense"}, (8, 10), True) == "dense"


def test_the_output_labels_score_is_classification() -> None:
    assert infer_role("logits", {}, (8, 10), True) == "classification"
    assert infer_role("logits", {}, (8, 4, 5, 5), True) == "classification"  # even at rank 4


def test_otherwise_by_rank() -> None:
    assert infer_role("map", {}, (2, 3, 16, 16), False) == "dense"
    assert infer_role("map", {}, (2, 1, 3, 16, 16), False) == "dense"
    assert infer_role("hidden", {}, (2, 9, 32), False) == "embedding"
    assert infer_role("boxes", {}, (2, 4), False) == "regression"  # (batch, C) without labels: not a classifier
    assert infer_role("score", {}, (2,), False) == "regression"


def test_which_output_labels_score() -> None:
    shapes = {"boxes": (4, 4, 2), "logits": (4, 10), "emb": (4, 16)}
    assert labels_output(None, list(shapes), shapes, True) == "logits"  # the first (batch, C) output
    assert labels_output(None, list(shapes), shapes, False) is None  # no labels: no assumption
    assert labels_output("emb", list(shapes), shapes, False) == "emb"
    with pytest.raises(ValueError, match="labels_output 'logit' is not an output"):
        labels_output("logit", list(shapes), shapes, True)


def test_declared_roles_decide_which_output_labels_score() -> None:
    shapes = {"emb": (4, 16), "logits": (4, 10), "aux": (4, 10)}
    names = list(shapes)
    assert labels_output(None, names, shapes, True, {"emb": "embedding"}) == "logits"  # never a declared emb
    assert labels_output(None, names, shapes, True, {"aux": "classification"}) == "aux"  # the declared one
    assert (
        labels_output(None, names, shapes, True, {"emb": "embedding", "logits": "regression", "aux": "regression"})
        is None
    )
    with pytest.raises(AmbiguousLabelsOutput, match=r"^labels_output: several outputs .* \(logits, aux\)"):
        labels_output(None, names, shapes, True, {"logits": "classification", "aux": "classification"})
    assert labels_output(None, names, shapes, False, {"logits": "classification", "aux": "classification"}) is None
    assert labels_output("aux", names, shapes, True, {"logits": "classification", "aux": "classification"}) == "aux"
    with pytest.raises(ValueError, match="^metric_output 'emb' is declared embedding in model.roles"):
        labels_output("emb", names, shapes, True, {"emb": "embedding"}, param="metric_output")


def test_a_role_for_a_missing_output_is_one_line_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^model.roles: 'logit' is not an output of the reference.*logits"):
        check_declared({"logit": "classification"}, ["logits", "emb"])
    check_declared({"logits": "classification"}, ["logits", "emb"])
