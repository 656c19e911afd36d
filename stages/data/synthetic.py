"""The `synthetic` dataset kind: seeded random inputs in the recipe's shapes.

Fine for plumbing and timing, useless for INT8 scales: stages that calibrate
on it warn (`SYNTHETIC_WARNING`), and validation flags it in its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from pipeline.datakind import DataKind, DataSpec
from stages.data.base import IndexedDataset

if TYPE_CHECKING:
    import numpy as np

    from pipeline.schema import ModelSpec
    from stages.data.batching import Batch


class SyntheticData(DataSpec):
    """Seeded random inputs shaped by the recipe's tensors. Fine for plumbing, useless for INT8 scales."""

    kind: Literal["synthetic"]
    count: int = Field(64, ge=1, description="number of samples")
    seed: int = Field(0, description="random seed")
    distribution: Literal["normal", "uniform"] = Field("normal", description="normal(0, 1) or uniform[low, high)")
    low: float = Field(0.0, description="uniform: lower bound")
    high: float = Field(1.0, description="uniform: upper bound (exclusive)")
    classes: int | None = Field(None, ge=2, description="also draw random labels in [0, classes)")
    shape_point: Literal["min", "opt", "max"] = Field(
        "opt", description="where named dims are taken (sample dims only)"
    )


class Synthetic(DataKind):
    """Random data reads nothing: its spec (seed included) is its whole key."""

    kind = "synthetic"
    Spec = SyntheticData

    def open(self, name: str, spec: SyntheticData, base_dir: Path, model: ModelSpec | None) -> SyntheticDataset:
        return SyntheticDataset(name, spec, model)


class SyntheticDataset(IndexedDataset):
    """Seeded random inputs in the recipe's shapes; sample i comes from its own generator seeded (seed, i)."""

    kind = "synthetic"
    synthetic = True

    def __init__(self, name: str, spec: SyntheticData, model: ModelSpec | None) -> None:
        import numpy as np

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
        import numpy as np

        s = self.spec
        samples: dict[str, list[np.ndarray]] = {n: [] for n in self._shapes}
        labels = []
        for i in range(start, stop):
            rng = np.random.default_rng([s.seed, i])
            for name, shape in self._shapes.items():
                samples[name].append(_random(rng, shape, self._dtypes[name], s.distribution, s.low, s.high))
            if s.classes is not None:
                labels.append(rng.integers(0, s.classes))
        return (
            {n: np.stack(v) for n, v in samples.items()},
            np.asarray(labels, dtype=np.int64) if s.classes is not None else None,
        )


def _random(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, distribution: str, low: float, high: float
) -> np.ndarray:
    import numpy as np

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
