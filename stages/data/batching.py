"""Batches of one shape: re-cutting a dataset's chunks, and checking each batch against the recipe's tensors.

Datasets of text (a sequence length per batch) or images (a size per file)
yield samples of several shapes. A batch never mixes shapes: a run of
same-shaped samples is re-cut to the requested size, and where the shape
changes the batch ends early, so sample i stays sample i whatever the batch
size. Every batch is then checked against `model.tensors` and `model.dims`
(static dims equal, named dims within [min, max], a named dim shared by
several inputs equal across them) and cast to the declared dtypes; every error
is one line naming the dataset, the sample and the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

if TYPE_CHECKING:
    from pipeline.schema import ModelSpec

Batch = tuple[dict[str, np.ndarray], "np.ndarray | None"]
Signature = tuple[tuple[str, tuple[int, ...]], ...]


def batch_len(inputs: dict[str, np.ndarray], labels: np.ndarray | None, label: str) -> int:
    """The number of samples in a chunk; its arrays (and labels) must agree on it."""
    sizes = {name: (a.shape[0] if a.ndim else -1) for name, a in inputs.items()}
    if labels is not None:
        sizes["labels"] = len(labels)
    if not sizes or len(set(sizes.values())) != 1 or -1 in sizes.values():
        raise ValueError(
            f"{label}: a batch's arrays disagree on the batch size: "
            + (", ".join(f"{n} {s}" for n, s in sizes.items()) or "no inputs")
        )
    return next(iter(sizes.values()))


def signature(inputs: dict[str, np.ndarray]) -> Signature:
    """What samples must share to be stacked: each input's per-sample shape."""
    return tuple(sorted((name, tuple(a.shape[1:])) for name, a in inputs.items()))


def slice_batch(batch: Batch, start: int, stop: int) -> Batch:
    inputs, labels = batch
    return {n: a[start:stop] for n, a in inputs.items()}, None if labels is None else labels[start:stop]


def _concat(batches: list[Batch]) -> Batch:
    """Stack same-shaped chunks (the caller guarantees one signature)."""
    if len(batches) == 1:
        return batches[0]
    inputs = {n: np.concatenate([b[0][n] for b in batches]) for n in batches[0][0]}
    labels = None if batches[0][1] is None else np.concatenate([b[1] for b in batches])
    return inputs, labels


def rebatch(chunks: Iterable[Batch], size: int, label: str) -> Iterator[Batch]:
    """Re-cut chunks of any size into batches of `size` samples of one shape.

    A batch ends early where the sample shape changes (and at the end): chunks
    of different shapes are never concatenated.
    """
    pending: list[Batch] = []
    have = 0
    labelled: bool | None = None
    names: set[str] = set()
    shape: Signature | None = None
    for inputs, labels in chunks:
        n = batch_len(inputs, labels, label)
        if n == 0:
            continue
        if labelled is None:
            labelled, names = labels is not None, set(inputs)
        elif labelled != (labels is not None):
            raise ValueError(f"{label}: some batches have labels and some do not")
        elif set(inputs) != names:
            raise ValueError(f"{label}: batches disagree on input names: {sorted(names)} vs {sorted(inputs)}")
        sig = signature(inputs)
        if pending and sig != shape:
            yield _concat(pending)
            pending, have = [], 0
        shape = sig
        pending.append((inputs, labels))
        have += n
        if have >= size:
            merged = _concat(pending)
            start = 0
            while have - start >= size:
                yield slice_batch(merged, start, start + size)
                start += size
            pending = [slice_batch(merged, start, have)] if start < have else []
            have -= start
    if have:
        yield _concat(pending)


def conform(inputs: dict[str, np.ndarray], model: "ModelSpec | None", label: str, first: int) -> dict[str, np.ndarray]:
    """Check a batch (its first sample is number `first`) against the recipe's tensors; cast to their dtypes.

    Names must match the model's inputs, ranks and static dims must match, named
    dims must lie within the recipe's [min, max], and an input sharing a named
    dim with another must agree with it. The batch dim (dim 0) is the caller's.
    """
    if model is None or not model.tensors:
        return inputs
    if set(inputs) != set(model.tensors):
        raise ValueError(f"{label}: gives inputs {sorted(inputs)}, the model takes {sorted(model.tensors)}")
    where = f"{label}: sample {first}:"
    seen: dict[str, tuple[str, int]] = {}  # named dim -> (input, size) where first met
    out = {}
    for name, spec in model.tensors.items():
        arr = np.asarray(inputs[name])
        if arr.ndim != len(spec.shape):
            raise ValueError(
                f"{where} input {name!r} has samples of shape {tuple(arr.shape[1:])}, "
                f"the model expects {sample_shape(spec.shape)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if axis == 0:
                continue
            if isinstance(want, int):
                if got != want:
                    raise ValueError(
                        f"{where} input {name!r} dim {axis} is {got}, the model expects {want} "
                        f"(a sample is {sample_shape(spec.shape)})"
                    )
                continue
            r = model.dims[want]
            if not r.min <= got <= r.max:
                raise ValueError(f"{where} input {name!r} dim {axis} ({want}) is {got}, outside [{r.min}, {r.max}]")
            if want in seen and seen[want][1] != got:
                other, size = seen[want]
                raise ValueError(
                    f"{where} input {name!r} dim {axis} ({want}) is {got}, but input {other!r} has {want} = {size}"
                )
            seen.setdefault(want, (name, got))
        dtype = np.dtype("float32" if spec.dtype == "bfloat16" else spec.dtype)
        if arr.dtype != dtype:
            if not np.can_cast(arr.dtype, dtype, "same_kind"):
                raise ValueError(
                    f"{label}: input {name!r} holds {arr.dtype}, the model takes {dtype} (refusing a lossy cast)"
                )
            arr = arr.astype(dtype)
        out[name] = arr
    return out


def sample_shape(shape: list[int | str]) -> str:
    return "(" + ", ".join(str(d) for d in shape[1:]) + ("," if len(shape) == 2 else "") + ")"
