"""stages._calibration: the small-set rule at its edges, nearly constant and identical inputs, shape groups."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.stage import DatasetInput
from stages._calibration import CalibrationStats, calibration_warnings
from stages._data import SYNTHETIC_WARNING, open_dataset

SPEC = {"tensors": {"x": {"shape": ["batch", 4]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 8}}}


def stats_of(*batches: np.ndarray) -> CalibrationStats:
    stats = CalibrationStats()
    for batch in batches:
        stats.add({"x": batch})
    return stats


def warnings_for(stats: CalibrationStats, subset_size: int = 300, synthetic: str | None = None) -> list[str]:
    from pipeline.schema import ModelSpec

    ds = open_dataset(DatasetInput("calib", {"kind": "synthetic", "count": 1}, Path(".")), ModelSpec.model_validate(SPEC))
    return calibration_warnings(ds, stats, subset_size, synthetic)


def noise(n: int, seed: int = 0, shape: tuple[int, ...] = (4,)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape))


def test_small_set_needs_fewer_than_64_and_fewer_than_a_quarter_of_the_subset() -> None:
    assert warnings_for(stats_of(noise(63))) == [
        "calibrating on only 63 samples of data.calib (subset size 300): scales from so few samples rarely fit "
        "real inputs; give at least 64"]
    assert warnings_for(stats_of(noise(64))) == []
    assert warnings_for(stats_of(noise(10)), subset_size=40) == []  # asked for 40, gave 10: a quarter, a choice
    assert "give at least 11" in warnings_for(stats_of(noise(10)), subset_size=41)[0]
    assert warnings_for(stats_of(noise(64)), synthetic=SYNTHETIC_WARNING) == [SYNTHETIC_WARNING]


def test_nearly_constant_and_identical_inputs() -> None:
    base = noise(1)[0] + 3.0
    wobble = base + 1e-5 * noise(100, seed=1)
    line = warnings_for(stats_of(wobble[:50], wobble[50:]))
    assert len(line) == 1 and line[0].startswith("input 'x' of data.calib is nearly constant (spread ")
    assert line[0].endswith("of its RMS): INT8 scales calibrated on it will not fit real inputs")
    same = np.repeat(base[None], 100, axis=0) * np.float32(0.1)
    assert "identical in every sample" in warnings_for(stats_of(same))[0]
    assert "identical in every sample" in warnings_for(stats_of(np.zeros((100, 4))))[0]
    assert warnings_for(stats_of(base + 1e-2 * noise(100, seed=2))) == []  # 1e-2 spread on |x| ~ 3: real data
    assert warnings_for(stats_of(np.ones((100, 4), np.int64))) == []  # an attention mask of ones is normal


def test_shapes_are_compared_within_their_group_and_the_first_pass_only() -> None:
    one_each = stats_of(noise(1, shape=(5, 4)), noise(1, shape=(7, 4)), noise(64, shape=(9, 4)))
    assert one_each.samples == 66 and warnings_for(one_each) == []
    singles = stats_of(np.ones((1, 5, 4)), np.ones((1, 7, 4)))
    assert singles.constant_inputs() == {}  # no shape seen twice: nothing to compare, nothing said
    mixed = stats_of(np.ones((40, 5, 4)), np.ones((40, 7, 4)) * 2)
    assert mixed.constant_inputs() == {"x": 0.0}  # each group identical, although the groups differ
    mixed.freeze()
    mixed.add({"x": noise(40, shape=(5, 4))})
    assert mixed.samples == 80 and mixed.constant_inputs() == {"x": 0.0}
