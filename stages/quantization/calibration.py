"""Calibration warnings both quantizers share: data that quantizes without error but ships a broken engine.

An INT8 engine calibrated on too few samples, or on inputs that barely vary,
builds and runs; its scales just do not fit real data, and nothing fails until
someone measures accuracy. So each quantizer feeds its calibration batches
through a `CalibrationStats` on the way to the quantizer, and
`calibration_warnings` turns what it saw into one-line warnings that go into
the stage's summary, its quantize.json and the log (`WARNING: <stage>: ...`):

- synthetic data (random inputs), as before;
- a small set: fewer than `SMALL_SET` (64) samples *and* fewer than a quarter
  of the quantizer's subset size. Asking for 32 samples and giving 32 is a
  choice; asking for the default 300 and having 4 is the accident this catches;
- a nearly constant input, float or integer (uint8 images), except integer
  inputs holding at most two distinct values over the whole set: those are
  masks, and a mask of ones is what unpadded text looks like. (Token ids that
  vary are not constant either way; an integer input that repeats the same
  values in every sample, e.g. position ids, would warn.) Across the samples
  of each shape, the spread
  (RMS of each sample's distance from the mean sample) is below `CONSTANT_RATIO`
  (1e-3) of the input's RMS, or zero (every sample identical). Shapes seen
  only once cannot show a spread and are left out; if no shape repeats, the
  check says nothing rather than guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

if TYPE_CHECKING:
    from stages.data import Dataset

# (inputs, labels or None, index of the batch's first sample)
Item = tuple[dict[str, np.ndarray], "np.ndarray | None", int]

SMALL_SET = 64
CONSTANT_RATIO = 1e-3
IDENTICAL_RATIO = 1e-7  # below this the spread is float rounding: the samples are identical
MAX_GROUPS = 32  # shape groups tracked per input (bounds memory on datasets with many image sizes)


def limited_batches(ds: "Dataset", batch_size: int, limit: int, names: list[str]) -> Iterator[Item]:
    """The first `limit` samples of `ds` in batches (short ones where the shape changes), input names checked."""
    if limit < 1:
        raise no_samples(ds)
    seen = 0
    for inputs, labels in ds.batches(batch_size):
        if set(inputs) != set(names):
            raise ValueError(f"{ds.label}: gives inputs {sorted(inputs)}, the model takes {sorted(names)}")
        keep = min(len(next(iter(inputs.values()))), limit - seen)
        yield {k: v[:keep] for k, v in inputs.items()}, None if labels is None else labels[:keep], seen
        seen += keep
        if seen >= limit:
            return
    if seen == 0:
        raise no_samples(ds)


def no_samples(ds: "Dataset") -> ValueError:
    """The one-line error for a dataset that yields nothing (the quantizers' own messages name no dataset)."""
    return ValueError(f"{ds.label} gave no samples")


def batch_count(ds: "Dataset", batch_size: int, limit: int, names: list[str]) -> int:
    """How many batches `limited_batches` yields: `limit` itself for single samples, else one counting pass
    (quantizers size their loops by it, and a shape change adds a short batch the arithmetic cannot see)."""
    if batch_size == 1:
        return limit
    return sum(1 for _ in limited_batches(ds, batch_size, limit, names))


class CalibrationStats:
    """Running per-input sums over calibration samples, grouped by sample shape (float64, one pass)."""

    def __init__(self) -> None:
        self.samples = 0
        # input -> sample shape -> [count, sum, sum of squares]
        self._groups: dict[str, dict[tuple[int, ...], list]] = {}
        self._masks: dict[str, set[int]] = {}  # integer input -> its distinct values, while at most two
        self._varied: set[str] = set()  # integer inputs seen with more than two values
        self._frozen = False

    def add(self, inputs: dict[str, np.ndarray]) -> None:
        """Count one batch (ignored once `freeze` was called: later passes see the same data)."""
        if self._frozen or not inputs:
            return
        self.samples += len(next(iter(inputs.values())))
        for name, batch in inputs.items():
            kind = np.asarray(batch).dtype.kind
            if kind not in "fiub":
                continue
            if kind != "f" and name not in self._varied:
                self._note_values(name, np.asarray(batch))
            x = np.asarray(batch, dtype=np.float64)
            groups = self._groups.setdefault(name, {})
            key = tuple(x.shape[1:])
            if key not in groups:
                if len(groups) >= MAX_GROUPS:
                    continue
                groups[key] = [0, np.zeros(key), np.zeros(key)]
            group = groups[key]
            group[0] += len(x)
            group[1] += x.sum(axis=0)
            group[2] += np.square(x).sum(axis=0)

    def _note_values(self, name: str, batch: np.ndarray) -> None:
        """Track an integer input's distinct values until a third shows it is not a mask."""
        values = self._masks.setdefault(name, set())
        values.update(np.unique(batch)[:3].tolist())
        if len(values) > 2:
            del self._masks[name]
            self._varied.add(name)

    def freeze(self) -> None:
        """Stop counting: the first pass over the data is the one that describes it."""
        self._frozen = True

    def constant_inputs(self) -> dict[str, float]:
        """Inputs whose samples barely differ: name -> spread / RMS (0.0 when all samples are identical)."""
        found = {}
        for name, groups in self._groups.items():
            if name in self._masks:
                continue  # at most two values: a mask, and an all-ones attention mask is normal
            spread = energy = 0.0
            repeated = False
            for count, total, squares in groups.values():
                if count < 2:
                    continue
                repeated = True
                energy += float(squares.sum())
                spread += float(np.clip(squares - np.square(total) / count, 0, None).sum())
            if not repeated:
                continue
            if energy == 0.0:
                found[name] = 0.0  # all zeros: identical
                continue
            ratio = float(np.sqrt(spread / energy))
            if ratio < CONSTANT_RATIO:
                found[name] = ratio if ratio > IDENTICAL_RATIO else 0.0
        return found


def calibration_warnings(ds: "Dataset", stats: CalibrationStats, subset_size: int, synthetic: str | None) -> list[str]:
    """One line per reason the calibration may give a broken engine (`synthetic`: the dataset's own warning)."""
    warnings = [synthetic] if synthetic else []
    n = stats.samples
    if n < SMALL_SET and n * 4 < subset_size:
        warnings.append(
            f"calibrating on only {n} sample{'s' if n != 1 else ''} of {ds.label} (subset size "
            f"{subset_size}): scales from so few samples rarely fit real inputs; give at least "
            f"{min(SMALL_SET, -(-subset_size // 4))}"
        )
    for name, ratio in stats.constant_inputs().items():
        how = "identical in every sample" if ratio == 0.0 else f"nearly constant (spread {ratio:.1e} of its RMS)"
        warnings.append(f"input {name!r} of {ds.label} is {how}: INT8 scales calibrated on it will not fit real inputs")
    return warnings


def inputs_of(item: Item) -> dict[str, np.ndarray]:
    """What NNCF feeds the model from an item."""
    return item[0]


class Feed:
    """A re-iterable view of a dataset for NNCF: its first `limit` samples in batches, input names checked.

    Items are (inputs, labels, index of the first sample). `__len__` (in batches)
    and `batch_size` are what nncf.Dataset looks for: the length bounds its loops
    (it must count the short batches where the sample shape changes, so with
    batches of several samples it takes one counting pass), a batch size above 1
    turns on batch-wise statistics. The first pass also feeds `stats`.
    """

    def __init__(
        self,
        ds: "Dataset",
        batch_size: int,
        limit: int,
        model_inputs: list[str],
        progress: Callable[..., None] | None = None,
        stats: "CalibrationStats | None" = None,
    ) -> None:
        self.ds, self.batch_size, self.limit, self.model_inputs = ds, batch_size, limit, model_inputs
        self.progress, self.stats = progress, stats
        self.samples_seen = 0
        self._passes = 0
        self._length: int | None = None

    def __len__(self) -> int:
        if self._length is None:
            self._length = batch_count(self.ds, self.batch_size, self.limit, self.model_inputs)
        return self._length

    def __iter__(self) -> Iterator["Item"]:
        self._passes += 1
        for inputs, labels, first in limited_batches(self.ds, self.batch_size, self.limit, self.model_inputs):
            seen = first + len(next(iter(inputs.values())))
            self.samples_seen = max(self.samples_seen, seen)
            if self.stats is not None and self._passes == 1:
                self.stats.add(inputs)
            if self.progress is not None:
                self.progress(seen, self.limit, f"calibration pass {self._passes}")
            yield inputs, labels, first


def sample_count(ds: "Dataset") -> int:
    """Samples in `ds`; a python source of unknown length is counted by one pass."""
    if ds.count is not None:
        return ds.count
    return sum(len(next(iter(inputs.values()))) for inputs, _ in ds.batches(64))


def fit_static_batch(model: Any, batch_size: int, samples: int) -> int:
    """Samples to use so every batch fits the OpenVINO `model`: all of them unless its batch dim is static."""
    from stages.data import whole_batches

    shapes = [i.get_partial_shape() for i in model.inputs]
    fixed = {s[0].get_length() for s in shapes if s.rank.is_static and s.rank.get_length() > 0 and s[0].is_static}
    return whole_batches(fixed, batch_size, samples, "quantize the model with a dynamic batch")
