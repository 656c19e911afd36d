"""Data for `digits_transformer_search.yaml`: the digits the search tunes on, apart from calibration and test.

Training images 300.. (calibration reads the first 300, `digits_transformer_plugin.calibration`), read as
sequences of row tokens like every other digits-transformer set, with their labels: the search judges
trials on them and holds a quarter out; the recipe's `validate` then checks the choice on the 597
held-out test digits no stage tuned on.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from digits_plugin import _split
from digits_transformer_plugin import _sequences


def tuning(start: int = 300, count: int = 600, batch: int = 50) -> Iterator[dict[str, np.ndarray]]:
    """`count` training images from `start`, mixed lengths, labelled."""
    x, y, _, _ = _split()
    yield from _sequences(x[start : start + count, 0], y[start : start + count], batch, seed=3)
