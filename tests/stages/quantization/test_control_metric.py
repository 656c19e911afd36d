"""stages.quantization.control_metric: the figure accuracy control keeps, per role, on a stand-in compiled model."""

from __future__ import annotations

import numpy as np
import pytest

from stages.common.roles import AmbiguousLabelsOutput
from stages.quantization.control_metric import ControlMetric, metric_choice


def items(n_batches: int = 3, size: int = 2) -> list:
    rng = np.random.default_rng(0)
    return [
        ({"x": rng.random((size, 1, 4, 4)).astype(np.float32)}, np.arange(size) % 3, i * size) for i in range(n_batches)
    ]


def test_dense_is_mean_iou_against_the_float_maps() -> None:
    data = items()
    float_model = lambda inputs: [inputs["x"]]  # noqa: E731 - the "model" passes its input through
    metric = ControlMetric("mask", 0, "dense", {first: float_model(x)[0] for x, _, first in data})
    assert metric.figure == "iou_mean" and metric(float_model, data) == 1.0
    flipped = lambda inputs: [1.0 - inputs["x"]]  # noqa: E731 - every pixel on the other side of 0.5
    assert metric(flipped, data) == 0.0
    half = lambda inputs: [np.where(np.arange(16).reshape(1, 1, 4, 4) < 8, inputs["x"], 0.0)]  # noqa: E731
    assert 0.0 < metric(half, data) < 1.0


def test_embedding_is_the_worst_sample_cosine_and_classification_top1() -> None:
    data = items()
    ref = {first: x["x"].reshape(len(x["x"]), -1) for x, _, first in data}
    metric = ControlMetric("emb", 0, "embedding", ref)
    assert metric.figure == "cosine_min"
    by_batch = {id(x["x"]): first for x, _, first in data}

    def one_sample_flipped(inputs: dict) -> list:
        first = by_batch[id(inputs["x"])]
        out = ref[first].copy()
        if first == 4:
            out[1] = -out[1]  # sample 5 points the other way; the other five agree exactly
        return [out]

    assert metric(lambda inputs: [ref[by_batch[id(inputs["x"])]]], data) == pytest.approx(1.0)
    assert metric(one_sample_flipped, data) == pytest.approx(-1.0)  # the worst sample, not the mean (2/3)
    logits = ControlMetric("logits", 0, "classification")
    assert logits(lambda inputs: [np.eye(3)[[0, 1]]], data) == 1.0  # labels are 0, 1 in every batch
    assert logits(lambda inputs: [np.eye(3)[[1, 1]]], data) == 0.5


def test_the_metric_output_is_validates_labels_output_with_declared_roles() -> None:
    shapes = {"emb": (2, 6), "logits": (2, 3)}
    names = list(shapes)
    assert metric_choice(None, names, shapes, {"emb": "embedding"}, True) == ("logits", "classification")
    assert metric_choice(None, names, shapes, {}, True) == ("emb", "classification")  # the rule's fallback
    assert metric_choice(None, names, shapes, {"emb": "embedding"}, False) == ("emb", "embedding")
    both = {"emb": "classification", "logits": "classification"}
    with pytest.raises(AmbiguousLabelsOutput, match="^metric_output: several outputs .*: set metric_output"):
        metric_choice(None, names, shapes, both, True)
    assert metric_choice("logits", names, shapes, both, True) == ("logits", "classification")
    assert metric_choice("emb", names, shapes, {"logits": "classification"}, True) == ("emb", "regression")
