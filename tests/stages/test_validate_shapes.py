"""validate on data of several shapes in one stage, padded positions, roles, and per-sample (worst) gates.

The data come from python datasets written next to each test (sequences of 5, 9 and 12 tokens; images of
8x8 and 12x12; vectors with one outlier); the models are tiny ONNX graphs built in code (graphs.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from graphs import (
    DENSE_SPEC,
    REGRESSION_SPEC,
    SEQUENCE_SPEC,
    dense_model,
    regression_model,
    save,
    sequence_model,
    token_model,
)
from harness import run_stage

from pipeline.errors import GateFailed
from pipeline.stage import DatasetInput
from stages.validate import Validate

QUICK = {"latency": False, "throughput_batches": []}
DATA = """
import numpy as np

def sequences(lengths=(5, 9, 12), per=3, labels=True):
    rng = np.random.default_rng(0)
    for n in lengths:
        tokens = rng.standard_normal((per, n, 4)).astype(np.float32)
        mask = np.ones((per, n), np.int64)
        mask[0, n - 2:] = 0  # each batch's first sample is padded at its end
        tokens[0, n - 2:] = 0.0
        yield {"tokens": tokens, "attention_mask": mask}, (rng.integers(0, 3, per) if labels else None)

def images(sizes=(8, 12), per=4):
    rng = np.random.default_rng(1)
    for s in sizes:
        yield {"image": rng.standard_normal((per, 3, s, s)).astype(np.float32)}, None

def photos(sizes=(6, 8, 10, 12, 14, 16)):
    rng = np.random.default_rng(1)
    for s in sizes:  # one image per size: every shape group has a single sample
        yield {"image": rng.standard_normal((1, 3, s, s)).astype(np.float32)}, None

def uneven(big=1):
    rng = np.random.default_rng(1)
    yield {"image": rng.standard_normal((7, 3, 8, 8)).astype(np.float32)}, None
    yield {"image": rng.standard_normal((big, 3, 16, 16)).astype(np.float32)}, None

def vectors(count=40, outlier=17):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((count, 4)).astype(np.float32)
    x[outlier, 0] = 60.0
    yield {"x": x}, None
"""


def dataset(tmp_path: Path, function: str, **kwargs: Any) -> DatasetInput:
    (tmp_path / "shapedata.py").write_text(DATA)
    return DatasetInput("val", {"kind": "python", "python": f"shapedata.py:{function}", "kwargs": kwargs}, tmp_path)


def validate(
    out: Path, candidate: Path, reference: Path, data: DatasetInput, spec: dict, **params: Any
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


def test_sequences_of_three_lengths_validate_in_one_stage(tmp_path: Path) -> None:
    ref = save(sequence_model(), tmp_path / "ref.onnx")
    cand = save(sequence_model(noise=0.05), tmp_path / "cand.onnx")
    validate(
        tmp_path / "out",
        cand,
        ref,
        dataset(tmp_path, "sequences"),
        SEQUENCE_SPEC,
        gates={"top1_agreement_min": 0.0, "cosine_min": 0.9},
    )
    r = report(tmp_path / "out")
    groups = r["data"]["groups"]
    assert r["passed"] and r["data"]["samples_used"] == 9 and r["data"]["mask_input"] == "attention_mask"
    assert groups == {
        "tokens 5x4, attention_mask 5": 3,
        "tokens 9x4, attention_mask 9": 3,
        "tokens 12x4, attention_mask 12": 3,
    }
    logits, hidden = r["outputs"]["logits"], r["outputs"]["hidden"]
    assert logits["role"] == "classification" and hidden["role"] == "embedding"  # labels score logits; rank 3
    assert set(logits["groups"]) == set(groups) and all(g["count"] == 3 for g in logits["groups"].values())
    # 3 logits per sample: cosine over all samples stacked; the hidden states (seq varies) stay per sample
    assert logits["dataset_level"] == ["cosine", "centered_cosine", "rel_error"] and hidden["dataset_level"] == []
    assert logits["figures"]["cosine"] < 1.0 and logits["figures"]["cosine_mean"] is None
    assert all(g["figures"]["cosine"] < 1.0 for g in logits["groups"].values())
    assert hidden["figures"]["cosine"] == pytest.approx(1.0) and set(hidden["groups"]) == set(groups)
    assert sum(r["numerics_batches"]) == 9 and logits["figures"]["accuracy"] is not None
    assert "## Shape groups" in (tmp_path / "out" / "report.md").read_text()
    validate(
        tmp_path / "capped",
        cand,
        ref,
        dataset(tmp_path, "sequences"),
        SEQUENCE_SPEC,
        max_samples=5,
        gates={"cosine_min": 0.9},
    )
    assert report(tmp_path / "capped")["data"]["groups"] == {
        "tokens 5x4, attention_mask 5": 3,
        "tokens 9x4, attention_mask 9": 2,
    }


def test_a_padded_position_with_garbage_does_not_move_the_figures(tmp_path: Path) -> None:
    ref = save(sequence_model(), tmp_path / "ref.onnx")
    junk = save(sequence_model(pad_garbage=True), tmp_path / "junk.onnx")
    data = dataset(tmp_path, "sequences", labels=False)
    tight = {"per_output": {"hidden": {"cosine_min": 0.999999, "max_abs": 1e-5}}}
    validate(tmp_path / "masked", junk, ref, data, SEQUENCE_SPEC, **tight)
    clean = report(tmp_path / "masked")["outputs"]["hidden"]["figures"]
    assert clean["max_abs"] < 1e-5 and clean["cosine"] > 0.999999
    with pytest.raises(GateFailed, match="hidden: max_abs"):
        validate(tmp_path / "unmasked", junk, ref, data, SEQUENCE_SPEC, mask_input=False, **tight)
    assert report(tmp_path / "unmasked")["outputs"]["hidden"]["figures"]["max_abs"] > 100


def test_images_at_two_sizes_and_the_dense_iou_gate(tmp_path: Path) -> None:
    ref = save(dense_model(), tmp_path / "ref.onnx")
    data = dataset(tmp_path, "images")
    validate(tmp_path / "good", ref, ref, data, DENSE_SPEC)  # the default gates for a dense f32 output
    r = report(tmp_path / "good")
    out = r["outputs"]["map"]
    assert out["role"] == "dense" and r["data"]["groups"] == {"image 3x8x8": 4, "image 3x12x12": 4}
    assert out["figures"]["iou"] == 1.0 and "iou_min" in {g["metric"] for g in r["gates"]}
    assert {"top1_agreement_min", "cosine_min"}.isdisjoint(g["metric"] for g in r["gates"])
    broken = save(dense_model(shift=1.0), tmp_path / "broken.onnx")
    with pytest.raises(GateFailed, match=r"map: IoU 0\.[0-9]+ < 0\.8"):
        validate(tmp_path / "bad", broken, ref, data, DENSE_SPEC, gates={"iou_min": 0.8})
    bad = report(tmp_path / "bad")["outputs"]["map"]
    assert {w["group"] for w in bad["worst"] if w["figure"] == "iou"} <= {"image 3x8x8", "image 3x12x12"}
    assert validate(tmp_path / "t", ref, ref, data, DENSE_SPEC, dense_threshold=0.9)["iou(map)"] == 1.0


def test_one_bad_sample_fails_cosine_min_although_the_mean_passes(tmp_path: Path) -> None:
    ref = save(regression_model(), tmp_path / "ref.onnx")
    cand = save(regression_model(outlier_gain=10.0), tmp_path / "cand.onnx")  # moves sample 17 only
    with pytest.raises(GateFailed, match=r"out: cosine -?0\.[0-9]+ < 0\.950") as failed:
        validate(tmp_path / "out", cand, ref, dataset(tmp_path, "vectors"), REGRESSION_SPEC, gates={"cosine_min": 0.95})
    figs = report(tmp_path / "out")["outputs"]["out"]["figures"]
    assert figs["cosine_mean"] > 0.95 > figs["cosine"]  # the mean would have passed
    assert figs["cosine_p5"] == pytest.approx(1.0, abs=1e-6)  # 2 of 40 below the 5th percentile: not the 1
    worst = report(tmp_path / "out")["outputs"]["out"]["worst"]
    assert worst[0] == {"figure": "cosine", "index": 17, "group": "x 4", "value": figs["cosine"]}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Worst samples" in md and "| out | cosine | 17 | x 4 |" in md
    assert "worst: sample 17" in md and len(failed.value.failures) == 1


def test_a_classification_gate_is_never_applied_to_a_regression_output(tmp_path: Path) -> None:
    ref = save(regression_model(), tmp_path / "ref.onnx")
    data = dataset(tmp_path, "vectors")
    validate(tmp_path / "default", ref, ref, data, REGRESSION_SPEC)
    r = report(tmp_path / "default")
    assert r["outputs"]["out"]["role"] == "regression"  # (batch, 3) without labels is not a classifier
    assert {"cosine_min", "rel_error_max"} <= {g["metric"] for g in r["gates"]}
    assert "top1_agreement_min" not in {g["metric"] for g in r["gates"]}
    with pytest.raises(GateFailed, match="top-1 agreement n/a .*applies to classification outputs, not regression"):
        validate(tmp_path / "given", ref, ref, data, REGRESSION_SPEC, gates={"top1_agreement_min": 0.9})
    with pytest.raises(GateFailed, match="out: top-1 agreement n/a \\(does not apply to a regression output\\)"):
        validate(tmp_path / "per", ref, ref, data, REGRESSION_SPEC, per_output={"out": {"top1_agreement_min": 0.9}})
    declared = {**REGRESSION_SPEC, "roles": {"out": "classification"}}
    validate(tmp_path / "declared", ref, ref, data, declared)
    assert "top1_agreement_min" in {g["metric"] for g in report(tmp_path / "declared")["gates"]}
    with pytest.raises(ValueError, match="model.roles: 'outs' is not an output of the reference"):
        validate(tmp_path / "typo", ref, ref, data, {**REGRESSION_SPEC, "roles": {"outs": "dense"}})


def test_a_sample_outside_the_declared_dims_is_one_line_naming_it(tmp_path: Path) -> None:
    ref = save(sequence_model(), tmp_path / "ref.onnx")
    with pytest.raises(ValueError, match=r"data\.val: sample 6: input 'tokens'.*seq.* 20"):
        validate(tmp_path / "out", ref, ref, dataset(tmp_path, "sequences", lengths=[5, 9, 20]), SEQUENCE_SPEC)


def test_photos_alone_in_their_shape_group_still_gate_centered_cosine(tmp_path: Path) -> None:
    ref = save(dense_model(gain=0.2, bias=-3.0), tmp_path / "ref.onnx")  # a sparse heat map
    flat = save(dense_model(gain=0.0, bias=-3.0), tmp_path / "flat.onnx")  # ignores its input: a constant map
    data = dataset(tmp_path, "photos")
    validate(tmp_path / "good", ref, ref, data, DENSE_SPEC, candidate_precision="int8")
    good = report(tmp_path / "good")["outputs"]["map"]
    assert good["self_centered"] == 6 and good["figures"]["centered_cosine"] == pytest.approx(1.0)
    with pytest.raises(GateFailed, match=r"map: centered cosine -?0\.0[0-9]* < 0\.900"):
        validate(tmp_path / "flat", flat, ref, data, DENSE_SPEC, candidate_precision="int8")
    r = report(tmp_path / "flat")
    assert r["outputs"]["map"]["figures"]["iou"] == 1.0  # IoU alone cannot see it: both maps are below 0.5
    assert abs(r["outputs"]["map"]["figures"]["centered_cosine"]) < 1e-6
    assert "6 sample(s) alone in their shape group" in (tmp_path / "flat" / "report.md").read_text()


def test_a_point_counts_as_run_on_the_dataset_only_at_its_exact_shapes(tmp_path: Path) -> None:
    ref = save(dense_model(), tmp_path / "ref.onnx")
    validate(tmp_path / "one", ref, ref, dataset(tmp_path, "uneven"), DENSE_SPEC)
    points = report(tmp_path / "one")["points"]
    # batches of 4 ran at 8x8 and a batch of 1 at 16x16: max (4 x 16x16) did not run on the dataset as such
    assert points["opt"]["source"] == "dataset" and points["max"]["source"] == "dataset samples, tiled"
    assert "outputs" in points["max"] and points["max"]["outputs"]["map"]["shape"]
    validate(tmp_path / "four", ref, ref, dataset(tmp_path, "uneven", big=7), DENSE_SPEC)  # 1, 2, 4
    assert report(tmp_path / "four")["points"]["max"]["source"] == "dataset"


def test_a_per_token_output_of_rank_2_is_masked(tmp_path: Path) -> None:
    ref = save(token_model(), tmp_path / "ref.onnx")
    junk = save(token_model(pad_garbage=True), tmp_path / "junk.onnx")
    data = dataset(tmp_path, "sequences", labels=False)
    tight = {"gates": {"max_abs": 1e-5}}
    validate(tmp_path / "masked", junk, ref, data, SEQUENCE_SPEC, **tight)
    assert report(tmp_path / "masked")["outputs"]["scores"]["figures"]["max_abs"] < 1e-5
    with pytest.raises(GateFailed, match="scores: max_abs"):
        validate(tmp_path / "unmasked", junk, ref, data, SEQUENCE_SPEC, mask_input=False, **tight)


def test_a_head_whose_width_equals_one_sequence_length_is_not_masked(tmp_path: Path) -> None:
    ref = save(sequence_model(), tmp_path / "ref.onnx")
    cand = save(sequence_model(noise=0.5), tmp_path / "cand.onnx")
    spec = {**SEQUENCE_SPEC, "dims": {**SEQUENCE_SPEC["dims"], "seq": {"min": 3, "opt": 5, "max": 16}}}
    data = dataset(tmp_path, "sequences", lengths=[3, 5], labels=False)  # logits (batch, 3) match seq 3
    figures = []
    for name, mask in (("default", None), ("none", False)):
        validate(tmp_path / name, cand, ref, data, spec, mask_input=mask, gates={"finite": True})
        figures.append(report(tmp_path / name)["outputs"]["logits"]["figures"])
    assert figures[0]["max_abs"] == figures[1]["max_abs"] and figures[0]["cosine"] == figures[1]["cosine"]
