"""The reader every dataset kind returns: a named, re-iterable stream of batches of one shape.

numpy is imported where arrays are made, not here: kind modules import this
one, and the planner imports kind modules on every run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import numpy as np

    from pipeline.schema import ModelSpec
    from stages.data.batching import Batch


class Dataset:
    """A named, re-iterable stream of batches. Subclasses yield chunks of any size; `batches` re-cuts them."""

    kind: str = ""
    synthetic: bool = False
    has_labels: bool = False

    def __init__(self, name: str, model: ModelSpec | None) -> None:
        self.name = name
        self.label = f"data.{name}"
        self.model = model
        self.count: int | None = None

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """(inputs, labels) batches of `batch_size` samples of one shape; a batch ends early where the shape
        changes, and the last may be smaller. Each is checked against the recipe's tensors and dims."""
        from stages.data.batching import conform, rebatch

        if batch_size < 1:
            raise ValueError(f"{self.label}: batch size must be >= 1, got {batch_size}")
        first = 0
        for inputs, labels in rebatch(self._chunks(batch_size), batch_size, self.label):
            yield conform(inputs, self.model, self.label, first), labels
            first += len(next(iter(inputs.values())))

    def info(self) -> dict[str, Any]:
        """What a report says about the data: name, kind, count, labels, synthetic."""
        return {
            "name": self.name,
            "kind": self.kind,
            "count": self.count,
            "labels": self.has_labels,
            "synthetic": self.synthetic,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} kind={self.kind} count={self.count}>"

    def _chunks(self, size: int) -> Iterator[Batch]:
        raise NotImplementedError


class IndexedDataset(Dataset):
    """A dataset that can read any sample range: chunks are just consecutive ranges."""

    def _chunks(self, size: int) -> Iterator[Batch]:
        assert self.count is not None
        for start in range(0, self.count, size):
            yield self._read(start, min(start + size, self.count))

    def _read(self, start: int, stop: int) -> Batch:
        raise NotImplementedError


def int_labels(values: Any, label: str) -> np.ndarray:
    """`values` as an int64 vector of class indices (a column vector or whole floats are fine)."""
    import numpy as np

    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{label}: labels must be a vector of class indices, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{label}: labels must be integer class indices, got fractional values")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{label}: labels must be integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64)
