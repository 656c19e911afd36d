"""The `npz` and `npy` dataset kinds: arrays on disk, streamed without loading them whole.

A .npy file is memory-mapped; .npz members are read row by row from the zip
(stored and deflated alike). Labels come from an array in the .npz or a .npy
file beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator, Literal

from pydantic import Field

from pipeline.datakind import DataKind, DataSpec
from pipeline.stage import KeyContext
from stages.data.base import Dataset, int_labels

if TYPE_CHECKING:
    import numpy as np

    from pipeline.schema import ModelSpec
    from stages.data.batching import Batch


class ArrayData(DataSpec):
    """Inputs (and optional labels) from a .npz file (one array per input name) or a single .npy."""

    kind: Literal["npz", "npy"]
    path: str = Field(description="file relative to the recipe")
    inputs: dict[str, str] | None = Field(
        None, description="model input -> array name in the .npz (default: same names)"
    )
    labels: str | None = Field(None, description="array name holding integer labels (npz), or a .npy file")
    count: int | None = Field(None, ge=1, description="use only the first N samples")


class Npz(DataKind):
    """Keyed by the bytes of the file it reads (and of a separate labels .npy)."""

    kind = "npz"
    Spec = ArrayData

    def fingerprint(self, spec: ArrayData, keys: KeyContext) -> dict[str, Any]:
        parts = {"path": keys.file_digest(Path(spec.path))}
        if spec.labels is not None and spec.labels.endswith(".npy"):
            parts["labels"] = keys.file_digest(Path(spec.labels))
        return parts

    def open(self, name: str, spec: ArrayData, base_dir: Path, model: ModelSpec | None) -> ArrayDataset:
        return ArrayDataset(name, spec, base_dir, model)


class Npy(Npz):
    kind = "npy"


class ArrayDataset(Dataset):
    """.npy (memory-mapped) or .npz (members streamed row by row from the zip) arrays, plus optional labels."""

    def __init__(self, name: str, spec: ArrayData, base: Path, model: ModelSpec | None) -> None:
        import numpy as np

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
            mapping = (
                dict(spec.inputs) if spec.inputs else {n: n for n in tensors or [m for m in members if m != label_name]}
            )
            self._arrays = {}
            for input_name, array in mapping.items():
                if array not in members:
                    raise ValueError(f"{self.label}: array {array!r} not in {path.name} (has: {', '.join(members)})")
                self._arrays[input_name] = _NpzMember(path, members[array], self.label)
            if label_name is not None:
                if label_name not in members:
                    raise ValueError(
                        f"{self.label}: labels array {label_name!r} not in {path.name} (has: {', '.join(members)})"
                    )
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
            raise ValueError(
                f"{self.label}: arrays disagree on the sample count: " + ", ".join(f"{n} {s}" for n, s in sizes.items())
            )
        total = next(iter(sizes.values()), 0)
        self.count = min(total, spec.count) if spec.count else total
        self.has_labels = self._labels is not None

    def _label_file(self, base: Path, rel: str) -> np.ndarray:
        import numpy as np

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
        import numpy as np

        for start in range(0, count, size):
            yield np.array(self.array[start : min(start + size, count)])  # a copy: the memmap stays read-only


class _NpzMember(_Array):
    """One array inside a .npz, read sequentially (works for stored and deflated members alike)."""

    def __init__(self, path: Path, member: str, label: str) -> None:
        import zipfile

        self.path, self.member = path, member
        with zipfile.ZipFile(path) as zf, zf.open(member) as f:
            self.shape, fortran, self.dtype = _npy_header(f)
        if self.dtype.hasobject:
            raise ValueError(f"{label}: array {member!r} in {path.name} holds Python objects; save numeric arrays")
        self.fortran = fortran and len(self.shape) > 1

    def rows(self, count: int, size: int) -> Iterator[np.ndarray]:
        import zipfile

        import numpy as np

        if self.fortran:  # column-major rows are not contiguous in the file: read it whole (rare)
            with np.load(self.path, allow_pickle=False) as npz:
                yield from _MappedArray(npz[self.member[:-4]]).rows(count, size)
            return
        row = self.shape[1:]
        row_bytes = self.dtype.itemsize * int(np.prod(row, dtype=np.int64))
        with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as f:
            assert isinstance(f, zipfile.ZipExtFile)  # what open() returns for reading; typed IO[bytes]
            _npy_header(f)
            for start in range(0, count, size):
                n = min(size, count - start)
                out = np.empty((n, *row), dtype=self.dtype)
                view = out.data.cast("B") if out.size else memoryview(b"")
                got = 0
                while got < n * row_bytes:
                    read = f.readinto(view[got:])
                    if not read:
                        raise ValueError(f"{self.path.name}: member {self.member} ends early")
                    got += read
                yield out


def _npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    import numpy as np

    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _npz_members(path: Path, label: str) -> dict[str, str]:
    """Array name -> zip member name."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return {m[:-4]: m for m in zf.namelist() if m.endswith(".npy")}
    except zipfile.BadZipFile:
        raise ValueError(f"{label}: {path.name} is not a .npz (zip) file") from None
