"""A toy dataset kind from a recipe's plugins (the way a third party adds one): `toy.lines` reads a text
file of numbers, one sample per line, as the model input `x`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipeline.datakind import DataKind, DataSpec
from pipeline.stage import KeyContext, RecipeValueError
from stages.data import Dataset


class LinesData(DataSpec):
    """Numbers, one sample per line."""

    kind: Literal["toy.lines"]
    path: str = Field(description="text file relative to the recipe")
    scale: float = Field(1.0, description="every number is multiplied by this")


class Lines(DataKind):
    kind = "toy.lines"
    Spec = LinesData

    def fingerprint(self, spec: LinesData, keys: KeyContext) -> dict[str, Any]:
        if spec.path.endswith(".bin"):
            raise RecipeValueError(("path",), "expected a text file, not .bin")
        return {"path": keys.file_digest(Path(spec.path))}

    def open(self, name: str, spec: LinesData, base_dir: Path, model: Any) -> Dataset:
        return LinesDataset(name, spec, base_dir, model)


class LinesDataset(Dataset):
    kind = "toy.lines"

    def __init__(self, name: str, spec: LinesData, base: Path, model: Any) -> None:
        super().__init__(name, model)
        self.rows = [float(v) * spec.scale for v in (base / spec.path).read_text().split()]
        self.count = len(self.rows)

    def _chunks(self, size: int) -> Any:
        import numpy as np

        for start in range(0, self.count, size):
            yield {"x": np.asarray(self.rows[start : start + size], dtype=np.float32)[:, None]}, None
