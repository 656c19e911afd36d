"""Dataset readers for the recipe's `data:` entries, streamed batch by batch.

Each dataset kind is one module here (`synthetic`, `arrays` for npz/npy,
`images`, `python`) holding its spec, its fingerprint (the files and code its
key holds) and its reader, registered under the `pipeline.data` entry points
as stage kinds are; a third party adds a kind the same way. `open_dataset(data,
model)` turns a `DatasetInput` into a `Dataset` whose `batches(n)` yields
`(inputs, labels)`: inputs keyed by the model's input names, each with the
samples stacked on dim 0, labels an int64 vector or None. Nothing is loaded
whole, and a batch holds samples of one shape (`batching`). Sample i is the
same whatever the batch size, so calibration and validation can batch as they
like. Every error names the dataset (`data.calib: ...`) and, for a sample that
does not fit the recipe's dims, the sample.

This package and its kind modules import no numpy at module level: the
planner loads a kind on every run, cached or not, to ask for its fingerprint.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stages.data.base import Dataset, int_labels

if TYPE_CHECKING:
    from pipeline.datakind import DataKind
    from pipeline.schema import ModelSpec
    from pipeline.stage import DatasetInput

__all__ = ["Dataset", "SYNTHETIC_WARNING", "int_labels", "open_dataset", "warn_if_synthetic", "whole_batches"]

SYNTHETIC_WARNING = (
    "calibrating on synthetic random data: INT8 scales from random inputs are a known way to ship a broken engine"
)


def open_dataset(data: DatasetInput, model: ModelSpec | None) -> Dataset:
    """The reader for `data`, shaped for `model`'s inputs: its kind's `open`, with the spec re-validated."""
    from pydantic import ValidationError

    kind = _kind_of(data)
    try:
        spec = kind.Spec.model_validate(data.spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ValueError(f"{data.label}: invalid dataset spec: {where}: {first['msg']}") from None
    return kind().open(data.name, spec, data.base_dir, model)


def _kind_of(data: DatasetInput) -> type[DataKind]:
    """The dataset's kind: the class the engine resolved (`data.reader`), else the entry point of its name."""
    if data.reader:
        module, _, qualname = data.reader.partition(":")
        found: object = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        return found  # type: ignore[return-value]
    from pipeline.errors import PipelineError
    from pipeline.recipe.registry import Registry

    try:
        return Registry().datasets.get(str(data.spec.get("kind")))
    except PipelineError as exc:
        raise ValueError(f"{data.label}: {exc}") from None


def warn_if_synthetic(ds: Dataset) -> str | None:
    """The warning stages print (and put in their reports) when `ds` is random data."""
    return SYNTHETIC_WARNING if ds.synthetic else None


def whole_batches(fixed: set[int], batch_size: int, samples: int, remedy: str) -> int:
    """Samples usable when a model's batch dim is fixed (`fixed`: the sizes its inputs declare; empty when
    dynamic): all of them if dynamic, else whole batches of exactly that size."""
    if not fixed:
        return samples
    if fixed != {batch_size}:
        raise ValueError(
            f"the model's batch dim is fixed at {'/'.join(map(str, sorted(fixed)))}; set batch_size "
            f"to match (or {remedy})"
        )
    if samples < batch_size:
        raise ValueError(f"the model's batch dim is fixed at {batch_size} but only {samples} samples exist")
    return samples - samples % batch_size  # a short last batch would not fit
