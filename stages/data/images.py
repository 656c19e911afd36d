"""The `images` dataset kind: a folder of image files, decoded per batch with the declared preprocessing.

Images of several sizes are fine (`preprocess: {resize: null, crop: null}` on
a detector's inputs): chunks are cut where the decoded size changes, and
`Dataset.batches` never stacks two sizes into one batch. Whether a size fits
the model is checked against `model.dims` like any other dataset's samples.
numpy and Pillow are imported when images are decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

from pydantic import Field

from pipeline.datakind import DataKind, DataSpec
from pipeline.schema import Strict
from pipeline.stage import KeyContext
from stages.data.base import Dataset

if TYPE_CHECKING:
    import numpy as np

    from pipeline.schema import ModelSpec
    from stages.data.batching import Batch


class Preprocess(Strict):
    """Declared image preprocessing; part of the dataset's digest."""

    resize: int | None = Field(default=256, description="shorter side resized to this many pixels (None: no resize)")
    crop: int | None = Field(default=224, description="center crop size (None: no crop)")
    mean: list[float] = Field(default=[0.485, 0.456, 0.406], description="per-channel mean, on 0-1 scaled pixels")
    std: list[float] = Field(default=[0.229, 0.224, 0.225], description="per-channel std")
    layout: Literal["NCHW", "NHWC"] = Field(default="NCHW", description="channel order of the model input")
    dtype: Literal["float32", "float16", "uint8"] = Field(
        default="float32", description="input dtype (uint8: raw pixels, no mean/std)"
    )
    grayscale: bool = Field(default=False, description="one channel instead of RGB")


class ImageFolderData(DataSpec):
    """Images in ImageNet layout (one subfolder per class) or a flat folder plus a labels file."""

    kind: Literal["images"]
    path: str = Field(description="folder relative to the recipe")
    labels: str | None = Field(None, description="flat folder: a text file of `filename label` lines")
    classes: list[str] | None = Field(None, description="class folder names in label order (default: sorted)")
    input: str | None = Field(None, description="model input the images feed (default: the only one)")
    count: int | None = Field(
        None, ge=1, description="use only N images, taken round-robin over classes (a subset stays class-balanced)"
    )
    preprocess: Preprocess = Field(
        default_factory=lambda: Preprocess(), description="resize, crop, normalisation (below)"
    )


class Images(DataKind):
    """Keyed by every file under the folder (and the labels file), so a changed image rebuilds."""

    kind = "images"
    Spec = ImageFolderData

    def fingerprint(self, spec: ImageFolderData, keys: KeyContext) -> dict[str, Any]:
        parts = {"path": keys.file_digest(Path(spec.path))}
        if spec.labels is not None:
            parts["labels"] = keys.file_digest(Path(spec.labels))
        return parts

    def open(self, name: str, spec: ImageFolderData, base_dir: Path, model: ModelSpec | None) -> ImageDataset:
        return ImageDataset(name, spec, base_dir, model)


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class ImageDataset(Dataset):
    """A folder of images, one subfolder per class or flat with a `filename label` file; decoded per batch."""

    kind = "images"

    def __init__(self, name: str, spec: ImageFolderData, base: Path, model: ModelSpec | None) -> None:
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
            self.items = _class_balanced(self.items)[: spec.count]
        self.count = len(self.items)
        self.has_labels = self.items[0][1] is not None
        pp = spec.preprocess
        channels = 1 if pp.grayscale else 3
        for field_name in ("mean", "std"):
            values = getattr(pp, field_name)
            if pp.dtype != "uint8" and len(values) not in (1, channels):
                raise ValueError(
                    f"{self.label}: preprocess.{field_name} has {len(values)} values for {channels} channel(s)"
                )
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
                raise ValueError(
                    f"{self.label}: {self.spec.labels} line {lineno}: label {value!r} is not an integer"
                    + (" nor one of classes" if classes else " (give classes: to use names)")
                )
            image = self.root / filename
            if not image.is_file():
                raise ValueError(
                    f"{self.label}: {self.spec.labels} line {lineno}: no image {filename!r} in {self.spec.path!r}"
                )
            items.append((image, label))
        return sorted(items, key=lambda item: item[0].relative_to(self.root).as_posix())

    def _chunks(self, size: int) -> Iterator[Batch]:
        """Consecutive ranges of `size` images, each split where the decoded size changes."""
        import numpy as np

        assert self.count is not None
        for start in range(0, self.count, size):
            chunk = self.items[start : min(start + size, self.count)]
            images = [self._decode(path) for path, _ in chunk]
            run = 0
            for i in range(1, len(images) + 1):
                if i == len(images) or images[i].shape != images[run].shape:
                    labels = (
                        np.asarray([label for _, label in chunk[run:i]], dtype=np.int64) if self.has_labels else None
                    )
                    yield {self.input: np.stack(images[run:i])}, labels
                    run = i

    def _decode(self, path: Path) -> np.ndarray:
        try:
            return preprocess_image(path, self.spec.preprocess)
        except OSError as exc:
            raise ValueError(f"{self.label}: cannot read image {path.relative_to(self.root)}: {exc}") from None


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def preprocess_image(path: Path, pp: Preprocess) -> np.ndarray:
    """Decode one image and apply the declared preprocessing (torchvision's Resize/CenterCrop/Normalize).

    Resize scales the shorter side to `resize` (bilinear, antialiased), the longer
    to int(resize * long / short); CenterCrop pads with zeros when the image is
    smaller. float dtypes are scaled to 0-1 then normalised; uint8 stays raw pixels.
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as opened:
        im = opened.convert("L" if pp.grayscale else "RGB")
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
