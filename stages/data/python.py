"""The `python` dataset kind: a user function's batches, called afresh on every pass.

The function yields either `(inputs dict, labels or None)` tuples or plain
dicts of arrays. In a dict, the key the recipe names with `labels:` holds
integer labels and every other key must be a model input: a stray key is an
error naming it (with a hint to set `labels:` when none is set), rather than a
silently ignored array. Batches may differ in shape from one item to the next
(a sequence length per batch); `Dataset.batches` keeps the shapes apart. The
function's import closure enters the key, as a model factory's does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal

from pydantic import Field

from pipeline.datakind import DataKind, DataSpec
from pipeline.errors import NameNotDefined, one_line
from pipeline.stage import KeyContext, RecipeValueError
from stages.data.base import Dataset, int_labels

if TYPE_CHECKING:
    import numpy as np

    from pipeline.schema import ModelSpec
    from stages.data.batching import Batch


class PythonData(DataSpec):
    """`module:function` yielding (inputs dict, labels or None) batches, or dicts of arrays; its code enters the key."""

    kind: Literal["python"]
    python: str = Field(description="module:function or file.py:function, resolved from the recipe's folder")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the function")
    count: int | None = Field(None, ge=1, description="stop after N samples")
    labels: str | None = Field(
        None,
        description="when the function yields dicts: the key holding integer labels (every other key is a model input)",
    )


class Python(DataKind):
    """Keyed by the function's import closure: local modules by content, distributions by version."""

    kind = "python"
    Spec = PythonData

    def fingerprint(self, spec: PythonData, keys: KeyContext) -> dict[str, Any]:
        try:
            return {"python": keys.code_digest(spec.python)}
        except (OSError, ImportError, ValueError, NameNotDefined) as exc:
            raise RecipeValueError(("python",), one_line(exc)) from None

    def open(self, name: str, spec: PythonData, base_dir: Path, model: ModelSpec | None) -> PythonDataset:
        return PythonDataset(name, spec, base_dir, model)


class PythonDataset(Dataset):
    """A user function's iterable of batches (tuples or dicts), re-cut by `batches`."""

    kind = "python"

    def __init__(self, name: str, spec: PythonData, base: Path, model: ModelSpec | None) -> None:
        super().__init__(name, model)
        from stages.common.refs import callable_from_ref

        self.spec = spec
        try:
            self.function = callable_from_ref(spec.python, base)
        except ValueError as exc:
            raise ValueError(f"{self.label}: {exc}") from None
        self._has_labels: bool | None = None

    @property
    def has_labels(self) -> bool:
        """Known after one look at the first batch (the function is called once for it)."""
        if self._has_labels is None:
            first = next(iter(self._items()), None)
            self._has_labels = first is not None and first[1] is not None
        return self._has_labels

    @has_labels.setter
    def has_labels(self, value: bool) -> None:  # writable, as Dataset.has_labels is
        self._has_labels = value

    def _items(self) -> Iterator[Batch]:
        try:
            source: Iterable[Any] = self.function(**self.spec.kwargs)
        except Exception as exc:
            raise ValueError(f"{self.label}: {self.spec.python} raised {one_line(exc)}") from exc
        for index, item in enumerate(source):
            where = f"{self.label}: item {index} from {self.spec.python}"
            if isinstance(item, dict):
                inputs, labels = self._split(item, where)
            elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], dict):
                inputs, labels = item
            else:
                raise ValueError(
                    f"{where} is a {type(item).__name__}; expected (inputs dict, labels or None) or a dict of arrays"
                )
            yield (
                {k: _array(v, where, k) for k, v in inputs.items()},
                None if labels is None else int_labels(_array(labels, where, "labels"), self.label),
            )

    def _split(self, item: dict[str, Any], where: str) -> tuple[dict[str, Any], Any]:
        """A dict item's inputs and labels: `labels:` names the label key, every other key must be an input."""
        key = self.spec.labels
        known = list(self.model.tensors) if self.model is not None and self.model.tensors else None
        if key is not None and key not in item:
            raise ValueError(f"{where}: no key {key!r} (the dataset's labels:); has {', '.join(map(str, item))}")
        for name in item:
            if name == key or known is None or name in known:
                continue
            hint = (
                f" nor the labels key {key!r}"
                if key
                else f"; if it holds the labels, set `labels: {name}` on the dataset"
            )
            raise ValueError(f"{where}: key {name!r} is not a model input ({', '.join(known)}){hint}")
        inputs = {k: v for k, v in item.items() if k != key}
        return inputs, (item[key] if key is not None else None)

    def _chunks(self, size: int) -> Iterator[Batch]:
        from stages.data.batching import batch_len, slice_batch

        left = self.spec.count
        for inputs, labels in self._items():
            if left is not None:
                n = batch_len(inputs, labels, self.label)
                if n >= left:
                    yield slice_batch((inputs, labels), 0, left)
                    return
                left -= n
            yield inputs, labels


def _array(value: Any, where: str, key: str) -> np.ndarray:
    """`value` as one numeric array; a ragged list is an error naming the key, not numpy's message."""
    import numpy as np

    try:
        arr = np.asarray(value)
    except ValueError:
        raise ValueError(
            f"{where}: {key!r} is not one array (its samples differ in shape? yield one batch per shape)"
        ) from None
    if arr.dtype.hasobject:
        raise ValueError(
            f"{where}: {key!r} is not one numeric array (its samples differ in shape? yield one batch per shape)"
        )
    return arr
