"""validate's roles decide which output labels score, which figures are per sample, and which gates apply.

Outputs with few elements per sample (a (batch, 1) score) are compared over the whole output; the output
declared classification is the labels output; a default gate whose figure cannot be computed is reported as
not evaluated, never dropped. Models are tiny ONNX graphs built in code (graphs.py); data are python
datasets written next to each test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graphs import const, model_of, save, score_model
from harness import run_stage
from onnx import TensorProto, helper

from pipeline.errors import GateFailed
from pipeline.stage import DatasetInput
from stages.validate import Validate
from stages.validation.figures import output_entry
from stages.validation.numerics import Part

QUICK = {"latency": False, "throughput_batches": []}
SPEC = {"tensors": {"x": {"shape": ["batch", 4]}}, "dims": {"batch": {"min": 1, "opt": 8, "max": 32}}}
DATA = """
import numpy as np

def vecs(n=200, labels=False):
    rng = np.random.default_rng(5)
    yield {"x": rng.standard_normal((n, 4)).astype(np.float32)}, (rng.integers(0, 3, n) if labels else None)
"""


def dataset(tmp_path: Path, **kwargs: Any) -> DatasetInput:
    (tmp_path / "vecdata.py").write_text(DATA)
    return DatasetInput("val", {"kind": "python", "python": "vecdata.py:vecs", "kwargs": kwargs}, tmp_path)


def validate(
    out: Path, candidate: Path, reference: Path, data: DatasetInput, spec: dict = SPEC, **params: Any
) -> dict[str, Any]:
    return run_stage(
        Validate,
        out,
        {**QUICK, **params},
        inputs={"candidate": candidate, "reference": reference, "data": data},
        model=spec,
    )


def report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


def two_heads(permute: bool = False) -> Any:
    """x (batch, 4) -> emb (batch, 6) -> logits (batch, 3); `permute` shuffles the classes: every class wrong."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((4, 6)), rng.standard_normal((6, 3))
    w2 = w2[:, [1, 2, 0]] if permute else w2
    return model_of(
        [helper.make_node("MatMul", ["x", "w1"], ["emb"]), helper.make_node("MatMul", ["emb", "w2"], ["logits"])],
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 6]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
        ],
        [const("w1", w1), const("w2", w2)],
    )


def test_a_one_element_score_is_compared_over_the_whole_output(tmp_path: Path) -> None:
    ref = save(score_model(), tmp_path / "ref.onnx")
    data = dataset(tmp_path)
    good = save(score_model(bias=0.02), tmp_path / "good.onnx")  # 0.2% of the score's scale, everywhere
    row = validate(tmp_path / "good", good, ref, data, candidate_precision="int8")
    out = report(tmp_path / "good")["outputs"]["score"]
    assert row["gates"] == "4/4 passed" and out["role"] == "regression"
    assert out["dataset_level"] == ["cosine", "centered_cosine", "rel_error"] and out["figures"]["rel_error"] < 0.01
    assert not any(w["figure"] in out["dataset_level"] for w in out["worst"])
    assert "`score` has too few elements per sample" in (tmp_path / "good" / "report.md").read_text()
    for name, bad in (("flipped", score_model(sign=-1.0)), ("garbage", score_model(garbage=True))):
        with pytest.raises(GateFailed, match=r"score: cosine -?[01]\.[0-9]+ < 0\.950"):
            validate(tmp_path / name, save(bad, tmp_path / f"{name}.onnx"), ref, data, candidate_precision="int8")


def test_the_output_declared_classification_is_the_labels_output(tmp_path: Path) -> None:
    ref, bad = save(two_heads(), tmp_path / "ref.onnx"), save(two_heads(permute=True), tmp_path / "bad.onnx")
    data = dataset(tmp_path, labels=True)
    spec = {**SPEC, "roles": {"emb": "embedding"}}  # emb comes first but is declared: logits labels score
    with pytest.raises(GateFailed, match="logits: top-1 agreement 0.000 < 0.900"):
        validate(tmp_path / "fallback", bad, ref, data, spec, candidate_precision="int8")
    r = report(tmp_path / "fallback")
    assert r["data"]["labels_output"] == "logits" and r["outputs"]["logits"]["role"] == "classification"
    assert r["outputs"]["emb"]["role"] == "embedding" and r["outputs"]["logits"]["figures"]["accuracy"] is not None
    declared = {**SPEC, "roles": {"logits": "classification"}}
    validate(tmp_path / "declared", ref, ref, data, declared)
    assert report(tmp_path / "declared")["data"]["labels_output"] == "logits"
    both = {**SPEC, "roles": {"emb": "classification", "logits": "classification"}}
    with pytest.raises(
        ValueError,
        match=r"^labels_output: several outputs are declared classification in "
        r"model.roles \(emb, logits\): set labels_output",
    ):
        validate(tmp_path / "both", ref, ref, data, both)
    validate(tmp_path / "chosen", ref, ref, data, both, labels_output="emb")
    assert report(tmp_path / "chosen")["data"]["labels_output"] == "emb"
    with pytest.raises(ValueError, match="labels_output 'emb' is declared embedding in model.roles"):
        validate(tmp_path / "wrong", ref, ref, data, spec, labels_output="emb")


def test_a_gate_that_fits_no_output_does_not_ask_for_the_labels_output_the_recipe_set(tmp_path: Path) -> None:
    ref = save(two_heads(), tmp_path / "ref.onnx")
    gates = {"top1_agreement_min": 0.9}
    validate(tmp_path / "set", ref, ref, dataset(tmp_path, labels=True), labels_output="logits", gates=gates)
    said = [w for w in report(tmp_path / "set")["warnings"] if w.startswith("gate top1_agreement_min")]
    assert said == [
        "gate top1_agreement_min does not apply to emb: it applies to classification outputs, not regression "
        "(set model.roles)"
    ]
    assert "labels_output" not in (tmp_path / "set" / "report.md").read_text().split("## Gates")[0]


def test_a_default_gate_whose_figure_cannot_be_computed_is_reported_not_dropped(tmp_path: Path) -> None:
    ref = save(score_model(), tmp_path / "ref.onnx")
    spec = {**SPEC, "roles": {"score": "classification"}}  # one column: no top-1 to agree on
    row = validate(tmp_path / "out", ref, ref, dataset(tmp_path), spec)
    out = report(tmp_path / "out")["outputs"]["score"]
    assert "top1_agreement_min" not in out["gates"] and set(out["not_evaluated"]) == {"top1_agreement_min"}
    assert row["not_evaluated"] == "top1_agreement_min(score)" and row["gates"].endswith(", 1 not evaluated")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "default gate top1_agreement_min on score was not evaluated" in md.split("## Gates")[0]
    assert "| **NOT EVALUATED** | score | `top1_agreement_min` (default) |" in md


def part(ref: np.ndarray) -> Part:
    return Part("g", [ref], [ref.copy()], None, [np.arange(len(ref))])


def test_distinct_top1_counts_only_for_a_classification_output() -> None:
    ref = np.random.default_rng(0).standard_normal((16, 8))
    ref[:, 0] += 100.0  # column 0 always largest: a box regressor's width, say
    regression = output_entry([part(ref)], "regression", False, 0.5)["sensitivity"]
    classification = output_entry([part(ref)], "classification", False, 0.5)["sensitivity"]
    assert regression.distinct_top1 is None and classification.distinct_top1 == 1
