"""Dataset readers for the recipe's `data:` entries, streamed batch by batch.

`open_dataset(data, model)` turns a `DatasetInput` into a `Dataset` whose
`batches(n)` yields `(inputs, labels)`: inputs keyed by the model's input
names, each with the samples stacked on dim 0, labels an int64 vector or None.
Nothing is loaded whole: .npy files are memory-mapped, .npz members are read
row by row from the zip, images are decoded when their batch is asked for, and
a python source's own batches are re-cut to the requested size. Sample i is
the same whatever the batch size, so calibration and validation can batch as
they like. Every error names the dataset (`data.calib: ...`).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from pipeline.stage import DatasetInput

if TYPE_CHECKING:
    from pipeline.schema import ArrayData, ImageFolderData, ModelSpec, Preprocess, PythonData, SyntheticData

Batch = tuple[dict[str, np.ndarray], "np.ndarray | None"]

SYNTHETIC_WARNING = ("calibrating on synthetic random data: INT8 scales from random inputs are a known way "
                     "to ship a broken engine")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


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
        return ImageDataset(data.name, spec, base, model)
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
        """(inputs, labels) batches of exactly `batch_size` samples, the last one possibly smaller."""
        if batch_size < 1:
            raise ValueError(f"{self.label}: batch size must be >= 1, got {batch_size}")
        for inputs, labels in _rebatch(self._chunks(batch_size), batch_size, self.label):
            yield self._conform(inputs), labels

    def info(self) -> dict[str, Any]:
        """What a report says about the data: name, kind, count, labels, synthetic."""
        return {"name": self.name, "kind": self.kind, "count": self.count, "labels": self.has_labels,
                "synthetic": self.synthetic}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} kind={self.kind} count={self.count}>"

    def _chunks(self, size: int) -> Iterator[Batch]:
        raise NotImplementedError

    def _conform(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names and static dims against the recipe's tensors; cast to their dtypes where safe."""
        if self.model is None or not self.model.tensors:
            return inputs
        if set(inputs) != set(self.model.tensors):
            raise ValueError(f"{self.label}: gives inputs {sorted(inputs)}, "
                             f"the model takes {sorted(self.model.tensors)}")
        out = {}
        for name, spec in self.model.tensors.items():
            arr = np.asarray(inputs[name])
            if arr.ndim != len(spec.shape) or any(isinstance(d, int) and d != s
                                                  for d, s in zip(spec.shape[1:], arr.shape[1:])):
                raise ValueError(f"{self.label}: input {name!r} has samples of shape {tuple(arr.shape[1:])}, "
                                 f"the model expects {_sample_shape(spec.shape)}")
            dtype = np.dtype("float32" if spec.dtype == "bfloat16" else spec.dtype)
            if arr.dtype != dtype:
                if not np.can_cast(arr.dtype, dtype, "same_kind"):
                    raise ValueError(f"{self.label}: input {name!r} holds {arr.dtype}, the model takes {dtype} "
                                     "(refusing a lossy cast)")
                arr = arr.astype(dtype)
            out[name] = arr
        return out


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
                    self._labels = _int_labels(npz[label_name], self.label)
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
        return _int_labels(np.load(path, mmap_mode="r"), self.label)

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


def _int_labels(values: Any, label: str) -> np.ndarray:
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


class ImageDataset(_Indexed):
    """A folder of images, one subfolder per class or flat with a `filename label` file; decoded per batch."""

    kind = "images"

    def __init__(self, name: str, spec: "ImageFolderData", base: Path, model: "ModelSpec | None") -> None:
        super().__init__(name, model)
        self.spec = spec
        self.root = base / spec.path
        if not self.root.is_dir():
            raise ValueError(f"{self.label}: no such folder {spec.path!r} (looked for {self.root.resolve()})")
        tensors = list(model.tensors) if model is not None and model.tensors else []
        if spec.input is not None:
            if tensors and spec.input not in tensors:
                raise ValueError(f"{self.label}: input {spec.input!r} is not a model input (has: {', '.join(tensors)})")
            self.input = spec.input
        elif len(tensors) > 1:
            raise ValueError(f"{self.label}: the model takes {tensors}; say which one the images feed with input:")
        else:
            self.input = tensors[0] if tensors else "input"
        self.items = self._labelled(base) if spec.labels else self._by_folder()
        if not self.items:
            raise ValueError(f"{self.label}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {spec.path!r}")
        if spec.count:
            self.items = _class_balanced(self.items)[:spec.count]
        self.count = len(self.items)
        self.has_labels = self.items[0][1] is not None
        pp = spec.preprocess
        channels = 1 if pp.grayscale else 3
        for field_name in ("mean", "std"):
            values = getattr(pp, field_name)
            if pp.dtype != "uint8" and len(values) not in (1, channels):
                raise ValueError(f"{self.label}: preprocess.{field_name} has {len(values)} values for "
                                 f"{channels} channel(s)")
        if pp.dtype != "uint8" and any(s == 0 for s in pp.std):
            raise ValueError(f"{self.label}: preprocess.std must not contain 0")

    def _by_folder(self) -> list[tuple[Path, int | None]]:  # noqa: D401 - sorted by relative path
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        classes = self.spec.classes
        if classes is not None:
            missing = [c for c in classes if c not in folders]
            if missing:
                raise ValueError(f"{self.label}: class folders {missing} not found under {self.spec.path!r}")
        elif folders:
            classes = folders
        if not classes:  # a flat folder without a labels file: unlabelled images
            return [(p, None) for p in _images_in(self.root, recursive=False)]
        items = [(p, index) for index, c in enumerate(classes) for p in _images_in(self.root / c, recursive=True)]
        return sorted(items, key=lambda item: item[0].relative_to(self.root).as_posix())

    def _labelled(self, base: Path) -> list[tuple[Path, int | None]]:
        assert self.spec.labels is not None
        path = base / self.spec.labels
        if not path.is_file():
            raise ValueError(f"{self.label}: no such labels file {self.spec.labels!r} (looked for {path.resolve()})")
        classes = {c: i for i, c in enumerate(self.spec.classes or [])}
        items = []
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise ValueError(f"{self.label}: {self.spec.labels} line {lineno}: expected 'filename label'")
            filename, value = parts
            if value.lstrip("-").isdigit():
                label = int(value)
            elif value in classes:
                label = classes[value]
            else:
                raise ValueError(f"{self.label}: {self.spec.labels} line {lineno}: label {value!r} is not an integer"
                                 + (" nor one of classes" if classes else " (give classes: to use names)"))
            image = self.root / filename
            if not image.is_file():
                raise ValueError(f"{self.label}: {self.spec.labels} line {lineno}: no image {filename!r} "
                                 f"in {self.spec.path!r}")
            items.append((image, label))
        return sorted(items, key=lambda item: item[0].relative_to(self.root).as_posix())

    def _read(self, start: int, stop: int) -> Batch:
        chunk = self.items[start:stop]
        images = []
        for path, _ in chunk:
            try:
                images.append(preprocess_image(path, self.spec.preprocess))
            except OSError as exc:
                raise ValueError(f"{self.label}: cannot read image {path.relative_to(self.root)}: {exc}") from None
        shapes = {a.shape for a in images}
        if len(shapes) > 1:
            raise ValueError(f"{self.label}: images differ in size after preprocessing ({sorted(shapes)}); "
                             "set preprocess.resize and crop")
        labels = np.asarray([label for _, label in chunk], dtype=np.int64) if self.has_labels else None
        return {self.input: np.stack(images)}, labels


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not p.name.startswith("."))


def preprocess_image(path: Path, pp: "Preprocess") -> np.ndarray:
    """Decode one image and apply the declared preprocessing (torchvision's Resize/CenterCrop/Normalize).

    Resize scales the shorter side to `resize` (bilinear, antialiased), the longer
    to int(resize * long / short); CenterCrop pads with zeros when the image is
    smaller. float dtypes are scaled to 0-1 then normalised; uint8 stays raw pixels.
    """
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if pp.grayscale else "RGB")
        if pp.resize is not None:
            w, h = im.size
            if w <= h:
                size = (pp.resize, int(pp.resize * h / w))
            else:
                size = (int(pp.resize * w / h), pp.resize)
            if size != im.size:
                im = im.resize(size, Image.Resampling.BILINEAR)
        if pp.crop is not None:
            w, h = im.size
            top, left = int(round((h - pp.crop) / 2.0)), int(round((w - pp.crop) / 2.0))
            im = im.crop((left, top, left + pp.crop, top + pp.crop))
        pixels = np.asarray(im)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pp.dtype == "uint8":
        x = np.ascontiguousarray(pixels)
    else:
        mean, std = np.asarray(pp.mean, np.float32), np.asarray(pp.std, np.float32)
        x = ((pixels.astype(np.float32) / np.float32(255.0) - mean) / std).astype(pp.dtype)
    return np.ascontiguousarray(x.transpose(2, 0, 1)) if pp.layout == "NCHW" else x


class PythonDataset(Dataset):
    """A user function's iterable of (inputs, labels) batches, called afresh on every pass and re-cut."""

    kind = "python"

    def __init__(self, name: str, spec: "PythonData", base: Path, model: "ModelSpec | None") -> None:
        super().__init__(name, model)
        from stages._refs import callable_from_ref

        self.spec = spec
        try:
            self.function = callable_from_ref(spec.python, base)
        except ValueError as exc:
            raise ValueError(f"{self.label}: {exc}") from None
        self._has_labels: bool | None = None

    @property  # type: ignore[override]
    def has_labels(self) -> bool:
        """Known after one look at the first batch (the function is called once for it)."""
        if self._has_labels is None:
            first = next(iter(self._items()), None)
            self._has_labels = first is not None and first[1] is not None
        return self._has_labels

    def _items(self) -> Iterator[Batch]:
        try:
            source: Iterable[Any] = self.function(**self.spec.kwargs)
        except Exception as exc:
            raise ValueError(f"{self.label}: {self.spec.python} raised {type(exc).__name__}: {exc}") from exc
        for index, item in enumerate(source):
            if isinstance(item, dict):
                inputs, labels = item, None
            elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], dict):
                inputs, labels = item
            else:
                raise ValueError(f"{self.label}: item {index} from {self.spec.python} is a {type(item).__name__}; "
                                 "expected (inputs dict, labels or None)")
            yield ({k: np.asarray(v) for k, v in inputs.items()},
                   None if labels is None else _int_labels(labels, self.label))

    def _chunks(self, size: int) -> Iterator[Batch]:
        left = self.spec.count
        for inputs, labels in self._items():
            if left is not None:
                n = _batch_len(inputs, labels, self.label)
                if n >= left:
                    yield _slice((inputs, labels), 0, left)
                    return
                left -= n
            yield inputs, labels


def _batch_len(inputs: dict[str, np.ndarray], labels: np.ndarray | None, label: str) -> int:
    sizes = {name: (a.shape[0] if a.ndim else -1) for name, a in inputs.items()}
    if labels is not None:
        sizes["labels"] = len(labels)
    if not sizes or len(set(sizes.values())) != 1 or -1 in sizes.values():
        raise ValueError(f"{label}: a batch's arrays disagree on the batch size: "
                         + (", ".join(f"{n} {s}" for n, s in sizes.items()) or "no inputs"))
    return next(iter(sizes.values()))


def _slice(batch: Batch, start: int, stop: int) -> Batch:
    inputs, labels = batch
    return {n: a[start:stop] for n, a in inputs.items()}, None if labels is None else labels[start:stop]


def _concat(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    inputs = {n: np.concatenate([b[0][n] for b in batches]) for n in batches[0][0]}
    labels = None if batches[0][1] is None else np.concatenate([b[1] for b in batches])  # type: ignore[misc]
    return inputs, labels


def _rebatch(chunks: Iterable[Batch], size: int, label: str) -> Iterator[Batch]:
    """Re-cut chunks of any size into batches of exactly `size` (the last one may be smaller)."""
    pending: list[Batch] = []
    have = 0
    labelled: bool | None = None
    for inputs, labels in chunks:
        n = _batch_len(inputs, labels, label)
        if n == 0:
            continue
        if labelled is None:
            labelled, names = labels is not None, set(inputs)
        elif labelled != (labels is not None):
            raise ValueError(f"{label}: some batches have labels and some do not")
        elif set(inputs) != names:
            raise ValueError(f"{label}: batches disagree on input names: {sorted(names)} vs {sorted(inputs)}")
        pending.append((inputs, labels))
        have += n
        if have >= size:
            merged = _concat(pending)
            start = 0
            while have - start >= size:
                yield _slice(merged, start, start + size)
                start += size
            pending = [_slice(merged, start, have)] if start < have else []
            have -= start
    if have:
        yield _concat(pending)


def _sample_shape(shape: list[int | str]) -> str:
    return "(" + ", ".join(str(d) for d in shape[1:]) + ("," if len(shape) == 2 else "") + ")"


def _class_balanced(items: list[tuple[Path, int | None]]) -> list[tuple[Path, int | None]]:
    """Reorder round-robin over labels (each class in its sorted order), so the first N images of a
    class-per-folder dataset span every class instead of the first few: a calibration subset of an
    ImageNet folder must not be all tench. Unlabelled items keep their order."""
    if not items or items[0][1] is None:
        return items
    by_label: dict[int | None, list[tuple[Path, int | None]]] = {}
    for item in items:
        by_label.setdefault(item[1], []).append(item)
    rank = {id(item): i for group in by_label.values() for i, item in enumerate(group)}
    return sorted(items, key=lambda item: (rank[id(item)], item[1]))


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
