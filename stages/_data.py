"""Dataset readers for the recipe's `data:` entries, streamed batch by batch.

`open_dataset(data, model)` turns a `DatasetInput` into a `Dataset` whose
`batches(n)` yields `(inputs, labels)`: inputs keyed by the model's input
names, each with the samples stacked on dim 0, labels an int64 vector or None.
Nothing is loaded whole: .npy files are memory-mapped, .npz members are read
row by row from the zip, images (`stages._images`) are decoded when their batch
is asked for, and a python source's (`stages._pydata`) own batches are re-cut
to the requested size. A batch holds samples of one shape: where the shape
changes (text of several lengths, images of several sizes) it ends early
(`stages._batching`). Sample i is the same whatever the batch size, so
calibration and validation can batch as they like. Every error names the
dataset (`data.calib: ...`) and, for a sample that does not fit the recipe's
dims, the sample.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from pipeline.stage import DatasetInput
from stages._batching import Batch, conform, rebatch

if TYPE_CHECKING:
    from pipeline.schema import ArrayData, ModelSpec, SyntheticData

__all__ = ["Batch", "Dataset", "SYNTHETIC_WARNING", "open_dataset", "warn_if_synthetic", "whole_batches"]

SYNTHETIC_WARNING = ("calibrating on synthetic random data: INT8 scales from random inputs are a known way "
                     "to ship a broken engine")


def open_dataset(data: DatasetInput, model: "ModelSpec | None") -> "Dataset":
    """The reader for `data` (spec re-validated here), shaped for `model`'s inputs."""
    from pydantic import TypeAdapter, ValidationError

    from pipeline.schema import DataSpec

    try:
        spec = TypeAdapter(DataSpec).validate_python(data.spec)
    except ValidationError as exc:
        raise ValueError(f"data.{data.name}: invalid dataset spec: {exc}") from None
    base = Path(data.base_dir)
    if spec.kind == "synthetic":
        return SyntheticDataset(data.name, spec, model)
    if spec.kind in ("npz", "npy"):
        return ArrayDataset(data.name, spec, base, model)
    if spec.kind == "images":
        from stages._images import ImageDataset

        return ImageDataset(data.name, spec, base, model)
    from stages._pydata import PythonDataset

    return PythonDataset(data.name, spec, base, model)


def warn_if_synthetic(ds: "Dataset") -> str | None:
    """The warning stages print (and put in their reports) when `ds` is random data."""
    return SYNTHETIC_WARNING if ds.synthetic else None


class Dataset:
    """A named, re-iterable stream of batches. Subclasses yield chunks of any size; `batches` re-cuts them."""

    kind: str = ""
    synthetic: bool = False
    has_labels: bool = False

    def __init__(self, name: str, model: "ModelSpec | None") -> None:
        self.name = name
        self.label = f"data.{name}"
        self.model = model
        self.count: int | None = None

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """(inputs, labels) batches of `batch_size` samples of one shape; a batch ends early where the shape
        changes, and the last may be smaller. Each is checked against the recipe's tensors and dims."""
        if batch_size < 1:
            raise ValueError(f"{self.label}: batch size must be >= 1, got {batch_size}")
        first = 0
        for inputs, labels in rebatch(self._chunks(batch_size), batch_size, self.label):
            yield conform(inputs, self.model, self.label, first), labels
            first += len(next(iter(inputs.values())))

    def info(self) -> dict[str, Any]:
        """What a report says about the data: name, kind, count, labels, synthetic."""
        return {"name": self.name, "kind": self.kind, "count": self.count, "labels": self.has_labels,
                "synthetic": self.synthetic}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} kind={self.kind} count={self.count}>"

    def _chunks(self, size: int) -> Iterator[Batch]:
        raise NotImplementedError


class _Indexed(Dataset):
    """A dataset that can read any sample range: chunks are just consecutive ranges."""

    def _chunks(self, size: int) -> Iterator[Batch]:
        assert self.count is not None
        for start in range(0, self.count, size):
            yield self._read(start, min(start + size, self.count))

    def _read(self, start: int, stop: int) -> Batch:
        raise NotImplementedError


class SyntheticDataset(_Indexed):
    """Seeded random inputs in the recipe's shapes; sample i comes from its own generator seeded (seed, i)."""

    kind = "synthetic"
    synthetic = True

    def __init__(self, name: str, spec: "SyntheticData", model: "ModelSpec | None") -> None:
        super().__init__(name, model)
        if model is None or not model.tensors:
            raise ValueError(f"{self.label}: synthetic data needs model.tensors in the recipe (its shapes)")
        self.spec = spec
        self.count = spec.count
        self.has_labels = spec.classes is not None
        self._shapes = {}
        for tensor in model.tensors:
            shape = model.shape(tensor, spec.shape_point)
            if not shape:
                raise ValueError(f"{self.label}: input {tensor!r} is a scalar; expected a batch dim first")
            self._shapes[tensor] = shape[1:]
        self._dtypes = {n: np.dtype("float32" if t.dtype == "bfloat16" else t.dtype) for n, t in model.tensors.items()}

    def _read(self, start: int, stop: int) -> Batch:
        s = self.spec
        samples: dict[str, list[np.ndarray]] = {n: [] for n in self._shapes}
        labels = []
        for i in range(start, stop):
            rng = np.random.default_rng([s.seed, i])
            for name, shape in self._shapes.items():
                samples[name].append(_random(rng, shape, self._dtypes[name], s.distribution, s.low, s.high))
            if s.classes is not None:
                labels.append(rng.integers(0, s.classes))
        return ({n: np.stack(v) for n, v in samples.items()},
                np.asarray(labels, dtype=np.int64) if s.classes is not None else None)


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, distribution: str,
            low: float, high: float) -> np.ndarray:
    if dtype.kind == "f":
        if distribution == "normal":
            return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        return rng.uniform(low, high, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if distribution == "normal":  # small non-negative ints, valid as indices (like _onnxio.random_array)
        return rng.integers(0, 8, size=shape).astype(dtype)
    lo = int(np.floor(low))
    return rng.integers(lo, max(int(np.ceil(high)), lo + 1), size=shape).astype(dtype)


class ArrayDataset(Dataset):
    """.npy (memory-mapped) or .npz (members streamed row by row from the zip) arrays, plus optional labels."""

    def __init__(self, name: str, spec: "ArrayData", base: Path, model: "ModelSpec | None") -> None:
        super().__init__(name, model)
        self.kind = spec.kind
        path = base / spec.path
        if not path.is_file():
            raise ValueError(f"{self.label}: no such file {spec.path!r} (looked for {path.resolve()})")
        tensors = list(model.tensors) if model is not None and model.tensors else []
        if spec.kind == "npy":
            if spec.inputs is not None and len(spec.inputs) != 1:
                raise ValueError(f"{self.label}: a .npy file holds one array; inputs maps {sorted(spec.inputs)}")
            names = list(spec.inputs) if spec.inputs else tensors or ["input"]
            if len(names) != 1:
                raise ValueError(f"{self.label}: a .npy file feeds one input, the model takes {names}")
            self._arrays: dict[str, _Array] = {names[0]: _MappedArray(np.load(path, mmap_mode="r"))}
            self._labels = self._label_file(base, spec.labels) if spec.labels else None
        else:
            members = _npz_members(path, self.label)
            label_name = spec.labels if spec.labels and not spec.labels.endswith(".npy") else None
            mapping = dict(spec.inputs) if spec.inputs else {n: n for n in tensors or
                                                             [m for m in members if m != label_name]}
            self._arrays = {}
            for input_name, array in mapping.items():
                if array not in members:
                    raise ValueError(f"{self.label}: array {array!r} not in {path.name} (has: {', '.join(members)})")
                self._arrays[input_name] = _NpzMember(path, members[array], self.label)
            if label_name is not None:
                if label_name not in members:
                    raise ValueError(f"{self.label}: labels array {label_name!r} not in {path.name} "
                                     f"(has: {', '.join(members)})")
                with np.load(path, allow_pickle=False) as npz:
                    self._labels = int_labels(npz[label_name], self.label)
            else:
                self._labels = self._label_file(base, spec.labels) if spec.labels else None
        if not self._arrays:
            raise ValueError(f"{self.label}: {path.name} holds no input arrays")
        sizes = {n: a.shape[0] if a.shape else 0 for n, a in self._arrays.items()}
        if self._labels is not None:
            sizes["labels"] = len(self._labels)
        if len(set(sizes.values())) > 1:
            raise ValueError(f"{self.label}: arrays disagree on the sample count: "
                             + ", ".join(f"{n} {s}" for n, s in sizes.items()))
        total = next(iter(sizes.values()), 0)
        self.count = min(total, spec.count) if spec.count else total
        self.has_labels = self._labels is not None

    def _label_file(self, base: Path, rel: str) -> np.ndarray:
        path = base / rel
        if not rel.endswith(".npy"):
            raise ValueError(f"{self.label}: labels {rel!r}: expected an array name in the .npz or a .npy file")
        if not path.is_file():
            raise ValueError(f"{self.label}: no such labels file {rel!r} (looked for {path.resolve()})")
        return int_labels(np.load(path, mmap_mode="r"), self.label)

    def _chunks(self, size: int) -> Iterator[Batch]:
        assert self.count is not None
        streams = {n: a.rows(self.count, size) for n, a in self._arrays.items()}
        for start in range(0, self.count, size):
            inputs = {n: next(s) for n, s in streams.items()}
            stop = min(start + size, self.count)
            yield inputs, (self._labels[start:stop] if self._labels is not None else None)


class _Array:
    shape: tuple[int, ...]

    def rows(self, count: int, size: int) -> Iterator[np.ndarray]:
        raise NotImplementedError


class _MappedArray(_Array):
    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape = array, tuple(array.shape)

    def rows(self, count: int, size: int) -> Iterator[np.ndarray]:
        for start in range(0, count, size):
            yield np.array(self.array[start:min(start + size, count)])  # a copy: the memmap stays read-only


class _NpzMember(_Array):
    """One array inside a .npz, read sequentially (works for stored and deflated members alike)."""

    def __init__(self, path: Path, member: str, label: str) -> None:
        self.path, self.member = path, member
        with zipfile.ZipFile(path) as zf, zf.open(member) as f:
            self.shape, fortran, self.dtype = _npy_header(f)
        if self.dtype.hasobject:
            raise ValueError(f"{label}: array {member!r} in {path.name} holds Python objects; save numeric arrays")
        self.fortran = fortran and len(self.shape) > 1

    def rows(self, count: int, size: int) -> Iterator[np.ndarray]:
        if self.fortran:  # column-major rows are not contiguous in the file: read it whole (rare)
            with np.load(self.path, allow_pickle=False) as npz:
                yield from _MappedArray(npz[self.member[:-4]]).rows(count, size)
            return
        row = self.shape[1:]
        row_bytes = self.dtype.itemsize * int(np.prod(row, dtype=np.int64))
        with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as f:
            _npy_header(f)
            for start in range(0, count, size):
                n = min(size, count - start)
                out = np.empty((n, *row), dtype=self.dtype)
                view = memoryview(out).cast("B") if out.size else memoryview(b"")
                got = 0
                while got < n * row_bytes:
                    read = f.readinto(view[got:])
                    if not read:
                        raise ValueError(f"{self.path.name}: member {self.member} ends early")
                    got += read
                yield out


def _npy_header(f: io.BufferedIOBase) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _npz_members(path: Path, label: str) -> dict[str, str]:
    """Array name -> zip member name."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {m[:-4]: m for m in zf.namelist() if m.endswith(".npy")}
    except zipfile.BadZipFile:
        raise ValueError(f"{label}: {path.name} is not a .npz (zip) file") from None


def int_labels(values: Any, label: str) -> np.ndarray:
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


def whole_batches(fixed: set[int], batch_size: int, samples: int, remedy: str) -> int:
    """Samples usable when a model's batch dim is fixed (`fixed`: the sizes its inputs declare; empty when
    dynamic): all of them if dynamic, else whole batches of exactly that size."""
    if not fixed:
        return samples
    if fixed != {batch_size}:
        raise ValueError(f"the model's batch dim is fixed at {'/'.join(map(str, sorted(fixed)))}; set batch_size "
                         f"to match (or {remedy})")
    if samples < batch_size:
        raise ValueError(f"the model's batch dim is fixed at {batch_size} but only {samples} samples exist")
    return samples - samples % batch_size  # a short last batch would not fit
