"""The figure quantize.nncf's accuracy control keeps within `max_drop`, chosen by the output's role.

NNCF's `quantize_with_accuracy_control` reverts layers to float until a
`validation_fn(compiled_model, items) -> float` drops by at most `max_drop`
from the float model's value. Top-1 accuracy is the right figure only for a
classifier with labels; for other outputs the figure compares the INT8 model
with the float model itself, on the val data:

- classification: top-1 accuracy against the labels (labels required);
- embedding, regression: the worst sample's cosine similarity to the float
  model's output (so a single ruined sentence counts, as validate's
  `cosine_min` gate does); the float model scores 1.0;
- dense: the mean IoU of the maps thresholded at `DENSE_THRESHOLD` against the
  float model's maps thresholded alike (datasets give one integer label per
  sample, never a mask, so labels do not enter this figure).

The float model's outputs are computed once, with FP32 inference, and looked
up by the first sample index each item carries (`stages.quantization.calibration.Item`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

if TYPE_CHECKING:
    import openvino as ov

    from stages.quantization.calibration import Item  # what quantize.nncf's feeds yield

DENSE_THRESHOLD = 0.5
FIGURES = {"classification": "top1", "embedding": "cosine_min", "regression": "cosine_min", "dense": "iou_mean"}
FP32 = {"INFERENCE_PRECISION_HINT": "f32"}


class NeedsLabels(ValueError):
    """The metric output is a classifier's and the val data has no labels."""


@dataclass
class ControlMetric:
    """validation_fn for one output: `figure` of output `output` (port `index`) for role `role`."""

    output: str
    index: int
    role: str
    reference: dict[int, np.ndarray] = field(default_factory=dict)  # first sample index -> float model's output

    @property
    def figure(self) -> str:
        return FIGURES[self.role]

    def __call__(self, compiled: Any, items: Iterable[Item]) -> float:
        if self.role == "classification":
            return self._top1(compiled, items)
        from stages.common.metrics import cosine_per_sample, iou_per_sample

        values = []
        for inputs, _, first in items:
            got = np.asarray(compiled(inputs)[self.index])
            ref = self.reference[first]
            if self.role == "dense":
                values.append(iou_per_sample(ref, got, DENSE_THRESHOLD))
            else:
                values.append(cosine_per_sample(ref, got))
        if not values:
            return 0.0
        per_sample = np.concatenate(values)
        return float(per_sample.mean() if self.role == "dense" else per_sample.min())

    def _top1(self, compiled: Any, items: Iterable[Item]) -> float:
        correct = total = 0
        for inputs, labels, _ in items:
            assert labels is not None
            logits = np.asarray(compiled(inputs)[self.index])
            correct += int((logits.reshape(len(labels), -1).argmax(axis=1) == labels).sum())
            total += len(labels)
        return correct / max(total, 1)


def control_metric(
    core: "ov.Core",
    model: "ov.Model",
    items: Iterable["Item"],
    output: str | None,
    roles: dict[str, str],
    labelled: bool,
) -> ControlMetric:
    """The metric for `output` (default: the output labels score when the data has labels, else the first
    output), its role declared in `roles` or inferred by validate's rule (`stages.common.roles`)."""
    names = [o.get_any_name() for o in model.outputs]
    compiled = core.compile_model(model, "CPU", FP32)
    first = next(iter(items), None)
    if first is None:
        raise ValueError("the val data is empty: accuracy control has nothing to measure")
    shapes = {name: tuple(np.asarray(value).shape) for name, value in zip(names, compiled(first[0]).values())}
    output, role = metric_choice(output, names, shapes, roles, labelled)
    if role == "classification" and not labelled:
        raise NeedsLabels(
            f"output {output!r} is a classifier's: its figure, top-1 accuracy, needs labels "
            "(if it is not a classifier, declare its role under model.roles)"
        )
    index = names.index(output)
    reference = (
        {} if role == "classification" else {start: np.asarray(compiled(inputs)[index]) for inputs, _, start in items}
    )
    return ControlMetric(output, index, role, reference)


def metric_choice(
    output: str | None, names: list[str], shapes: dict[str, tuple[int, ...]], roles: dict[str, str], labelled: bool
) -> tuple[str, str]:
    """(output, role): `metric_output`, else the output labels score by validate's rule (declared roles
    first, `stages.common.roles.labels_output`), else the first output; its role as validate would give it."""
    from stages.common.roles import AmbiguousLabelsOutput, infer_role, labels_output

    try:
        scored = labels_output(None, names, shapes, labelled, roles, param="metric_output")
    except AmbiguousLabelsOutput:
        if output is None:
            raise
        scored = None  # the named output's role is declared, or it is not one of the declared classifiers
    output = output or scored or names[0]
    if output not in names:
        raise ValueError(f"metric_output {output!r} is not an output of the model (has: {', '.join(names)})")
    return output, infer_role(output, roles, shapes[output], output == scored)
