"""validate's samples, kept apart by shape, and the batches they run in.

Samples of different shapes (text at several sequence lengths, images at several
sizes) never meet in one array: they are read from the dataset, grouped by the
shape of their inputs (a group's key names each input's sample shape, e.g.
`tokens 9x8, attention_mask 9`), and each group is re-batched on its own,
cycling through the batch sizes of the declared `shapes` points. Every sample
keeps its index in the dataset, so a report can name it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pipeline.schema import ModelSpec

# Datasets end a batch where the sample shape changes, so any read size keeps shapes apart.
READ_BATCH = 64


@dataclass
class Group:
    """Same-shaped samples: their inputs stacked on dim 0, labels (or None) and dataset indices."""

    key: str
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def shape_key(inputs: dict[str, np.ndarray]) -> str:
    """`tokens 9x8, attention_mask 9`: each input's sample shape (scalars per sample: `()`)."""
    return ", ".join(f"{name} {'x'.join(map(str, a.shape[1:])) or '()'}" for name, a in inputs.items())


def load_groups(ds: Any, model: "ModelSpec", max_samples: int | None) -> list[Group]:
    """Up to `max_samples` samples of `ds`, grouped by shape in order of first appearance.

    The dataset checks each sample's dims against the recipe; `check_dims` repeats the range check so a
    reader that does not (a plugin's own dataset) still gets one clear line."""
    parts: dict[str, list[tuple[dict[str, np.ndarray], np.ndarray | None, int]]] = {}
    have = 0
    for inputs, labels in ds.batches(READ_BATCH):
        n = len(next(iter(inputs.values())))
        for i in range(n):
            sample = {k: v[i : i + 1] for k, v in inputs.items()}
            check_dims(sample, model, ds.label, have)
            parts.setdefault(shape_key(sample), []).append(
                (sample, None if labels is None else labels[i : i + 1], have)
            )
            have += 1
            if max_samples is not None and have >= max_samples:
                break
        if max_samples is not None and have >= max_samples:
            break
    if not have:
        raise ValueError(f"{ds.label} gave no samples")
    groups = []
    for key, items in parts.items():
        inputs = {k: np.concatenate([s[k] for s, _, _ in items]) for k in items[0][0]}
        labelled = all(lab is not None for _, lab, _ in items)
        labels = np.concatenate([lab for _, lab, _ in items]) if labelled else None
        groups.append(Group(key, inputs, labels, np.array([i for _, _, i in items], np.int64)))
    return groups


def check_dims(sample: dict[str, np.ndarray], model: "ModelSpec", label: str, index: int) -> None:
    """Each named dim of a sample within its declared [min, max]: one line naming the dataset, sample and dim."""
    for name, spec in model.tensors.items():
        if name not in sample:
            continue
        for dim, size in zip(spec.shape[1:], sample[name].shape[1:]):
            if isinstance(dim, str) and dim in model.dims:
                r = model.dims[dim]
                if not r.min <= size <= r.max:
                    raise ValueError(
                        f"{label}: sample {index}: input {name!r} has {dim} = {size}, outside the "
                        f"declared range [{r.min}, {r.max}] (model.dims.{dim})"
                    )


def batch_dim(model: "ModelSpec") -> str | int | None:
    """The dim every input leads with: its name (dynamic), its size (static), or None (no shared batch)."""
    firsts = {t.shape[0] if t.shape else None for t in model.tensors.values()}
    return firsts.pop() if len(firsts) == 1 else None


def batch_sizes(model: "ModelSpec", bdim: str | int | None, batch_size: int | None, points: Sequence[str]) -> list[int]:
    """The batch sizes the numerics pass cycles through: `batch_size`, else those of the `shapes` points."""
    if isinstance(bdim, int):
        if batch_size not in (None, bdim):
            raise ValueError(f"batch_size {batch_size}: the model's batch is fixed at {bdim}")
        return [bdim]
    if isinstance(bdim, str):
        r = model.dims[bdim]
        if batch_size is not None:
            if not r.min <= batch_size <= r.max:
                raise ValueError(f"batch_size {batch_size} is outside {bdim}'s range [{r.min}, {r.max}]")
            return [batch_size]
        return sorted({getattr(r, point) for point in (points or ["opt"])})
    return [1]


def schedule(n: int, sizes: list[int], bdim: str | int | None, model: "ModelSpec") -> list[tuple[int, int, int]]:
    """(start, samples, batch size) per batch: cycle through `sizes` while the next one fits; the remainder
    runs as one batch of its own size when the dim allows it, else padded up to the smallest size."""
    low = model.dims[bdim].min if isinstance(bdim, str) else sizes[0]
    plan: list[tuple[int, int, int]] = []
    start, i = 0, 0
    while start < n:
        left, size = n - start, sizes[i % len(sizes)]
        i += 1
        if size <= left:
            plan.append((start, size, size))
            start += size
        elif isinstance(bdim, str) and left >= low:
            plan.append((start, left, left))
            start = n
        elif any(s <= left for s in sizes):
            continue  # a smaller size later in the cycle fits
        else:
            plan.append((start, left, min(sizes)))  # padded; the padding's outputs are dropped
            start = n
    return plan


def take(array: np.ndarray, start: int, count: int, size: int) -> np.ndarray:
    """Samples [start, start+count), padded to `size` by repeating them (padded outputs are dropped)."""
    part = array[start : start + count]
    return part if count == size else np.resize(part, (size, *part.shape[1:])).astype(part.dtype)


def tile(inputs: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """`size` samples made by repeating these (timings and the declared points' shape checks)."""
    return {k: np.resize(v, (size, *v.shape[1:])).astype(v.dtype) for k, v in inputs.items()}
