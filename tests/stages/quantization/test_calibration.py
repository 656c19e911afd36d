"""stages.quantization.calibration: the small-set rule at its edges, nearly constant and identical inputs,
shape groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.stage import DatasetInput
from stages.data import SYNTHETIC_WARNING, open_dataset
from stages.quantization.calibration import CalibrationStats, calibration_warnings

SPEC = {"tensors": {"x": {"shape": ["batch", 4]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 8}}}


def stats_of(*batches: np.ndarray) -> CalibrationStats:
    stats = CalibrationStats()
    for batch in batches:
        stats.add({"x": batch})
    return stats


def warnings_for(stats: CalibrationStats, subset_size: int = 300, synthetic: str | None = None) -> list[str]:
    from pipeline.schema import ModelSpec

    ds = open_dataset(
        DatasetInput("calib", {"kind": "synthetic", "count": 1}, Path(".")), ModelSpec.model_validate(SPEC)
    )
    return calibration_warnings(ds, stats, subset_size, synthetic)


def noise(n: int, seed: int = 0, shape: tuple[int, ...] = (4,)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape))


def test_small_set_needs_fewer_than_64_and_fewer_than_a_quarter_of_the_subset() -> None:
    assert warnings_for(stats_of(noise(63))) == [
        "calibrating on only 63 samples of data.calib (subset size 300): scales from so few samples rarely fit "
        "real inputs; give at least 64"
    ]
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


def test_integer_inputs_are_checked_unless_they_hold_at_most_two_values() -> None:
    """uint8 images are checked like float ones; masks (at most two distinct values) are not."""
    image = np.random.default_rng(0).integers(0, 256, (1, 4), dtype=np.uint8)
    same = np.repeat(image, 300, axis=0)
    assert "input 'x' of data.calib is identical in every sample" in warnings_for(stats_of(same[:150], same[150:]))[0]
    varied = np.random.default_rng(1).integers(0, 256, (300, 4), dtype=np.uint8)
    assert warnings_for(stats_of(varied)) == []
    assert warnings_for(stats_of(np.ones((300, 4), np.int64))) == []  # all-ones attention mask
    assert warnings_for(stats_of(np.ones((300, 4), bool))) == []
    padded = np.ones((300, 4), np.int64)
    padded[::2, 3] = 0  # a mask with padding: two values, repeated pattern
    assert warnings_for(stats_of(padded[:150], padded[150:])) == []
    ids = np.repeat(np.array([[101, 2023, 2003, 102]]), 300, axis=0)  # one sentence 300 times
    assert "identical in every sample" in warnings_for(stats_of(ids))[0]


def test_identical_uint8_images_from_an_images_folder_warn(tmp_path: Path) -> None:
    """The `images` kind with `preprocess.dtype: uint8` gives raw uint8 pixels: 300 copies of one image warn."""
    from PIL import Image

    from pipeline.schema import ModelSpec

    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    for i in range(300):
        Image.fromarray(pixels).save(tmp_path / "imgs" / "cat" / f"{i:03d}.png")
    spec = ModelSpec.model_validate(
        {
            "tensors": {"x": {"shape": ["batch", 3, 8, 8], "dtype": "uint8"}},
            "dims": {"batch": {"min": 1, "opt": 2, "max": 64}},
        }
    )
    ds = open_dataset(
        DatasetInput(
            "calib",
            {"kind": "images", "path": "imgs", "preprocess": {"resize": None, "crop": None, "dtype": "uint8"}},
            tmp_path,
        ),
        spec,
    )
    stats = CalibrationStats()
    for inputs, _ in ds.batches(64):
        assert inputs["x"].dtype == np.uint8
        stats.add(inputs)
    assert stats.samples == 300
    assert calibration_warnings(ds, stats, 300, None) == [
        "input 'x' of data.calib is identical in every sample: INT8 scales calibrated on it will not fit real inputs"
    ]


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
