"""Agreement figures between a candidate engine and its reference: the one module that defines them.

Pure numpy. Every figure takes arrays shaped (samples, ...) with the reference
first; a sample's values are flattened before per-sample figures are taken. An
optional `weight` of the same shape (1 = counts, 0 = left out, e.g. padded
sequence positions) removes elements from every figure. One rule for zero
vectors everywhere: two zero vectors agree (cosine 1, relative error 0), a zero
vector and a non-zero one do not (cosine 0, relative error 1 or inf).

Why *centered* cosine: many networks (and every randomly initialised one)
produce outputs dominated by an input-independent component, the bias. Plain
cosine then stays near 1 for any engine that gets the bias right, even one
that ignores its input. Subtracting the reference's mean over a group of
same-shaped samples removes that component, so centered cosine measures
agreement on what the input changes. `sensitivity` and `insensitive_reason`
say when the reference itself is too flat for agreement figures to mean anything.

Per-sample figures aggregate as worst / mean / 5th percentile (`spread`);
proportions (agreement, accuracy) carry a 95% Wilson score interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# Below this, the reference's centered outputs are too small next to its raw outputs
# for cosine or top-1 figures to reflect the input: the bias decides them.
MIN_CENTERED_SPREAD = 1e-3
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1) if x.ndim else x.reshape(1, 1)


def _weights(weight: np.ndarray | None, like: np.ndarray) -> np.ndarray | None:
    return None if weight is None else np.broadcast_to(_flat(weight), like.shape)


def masked(reference: np.ndarray, candidate: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Flattened (samples, m) float64 copies with left-out elements set to 0 in both (they then add nothing)."""
    ref, cand = _flat(reference), _flat(candidate)
    w = _weights(weight, ref)
    if w is None:
        return ref, cand
    return np.where(w > 0, ref, 0.0), np.where(w > 0, cand, 0.0)


# -- per-sample figures ----------------------------------------------------------------------------


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, m) arrays; two zero rows agree (1), one zero row does not (0)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    cos = np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    return np.clip(cos, -1.0, 1.0)


def cosine_per_sample(reference: np.ndarray, candidate: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity of each sample's flattened outputs (left-out elements excluded)."""
    return cosines(*masked(reference, candidate, weight))


def centered_pair(
    reference: np.ndarray, candidate: np.ndarray, weight: np.ndarray | None = None, center: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Flattened (samples, m) reference and candidate minus `center` (default: the reference's mean over
    these samples), left-out elements 0: what centered cosine compares."""
    ref, cand = masked(reference, candidate, weight)
    if center is None:
        w = _weights(weight, ref)
        count = ref.shape[0] if w is None else np.maximum((w > 0).sum(axis=0), 1)
        center = ref.sum(axis=0) / count
    mean = np.asarray(center, np.float64).reshape(1, -1)
    a, b = ref - mean, cand - mean
    w = _weights(weight, ref)
    if w is not None:
        a, b = np.where(w > 0, a, 0.0), np.where(w > 0, b, 0.0)
    return a, b


def self_centered_pair(
    reference: np.ndarray, candidate: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Like `centered_pair`, but each sample minus its own reference mean: a sample alone in its shape group
    has no group mean to center on. A map output (rank >= 4: (samples, C, H, W)) is centered per map (over
    its last two dims), anything else over the whole sample; a constant candidate then scores cosine 0."""
    ref = np.asarray(reference, np.float64)
    cand = np.asarray(candidate, np.float64)
    if ref.ndim < 2:
        ref, cand = ref.reshape(-1, 1), cand.reshape(-1, 1)
    axes = (ref.ndim - 2, ref.ndim - 1) if ref.ndim >= 4 else tuple(range(1, ref.ndim))
    keep = np.ones(ref.shape, bool) if weight is None else np.broadcast_to(np.asarray(weight) > 0, ref.shape)
    count = np.maximum(keep.sum(axis=axes, keepdims=True), 1)
    mean = np.where(keep, ref, 0.0).sum(axis=axes, keepdims=True) / count
    a, b = np.where(keep, ref - mean, 0.0), np.where(keep, cand - mean, 0.0)
    return _flat(a), _flat(b)


def centered_cosine_per_sample(
    reference: np.ndarray, candidate: np.ndarray, weight: np.ndarray | None = None, center: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample cosine after subtracting `center` (default: the reference's mean over these samples)."""
    return cosines(*centered_pair(reference, candidate, weight, center))


def self_centered_cosine_per_sample(
    reference: np.ndarray, candidate: np.ndarray, weight: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample cosine after subtracting each sample's (each map's) own reference mean."""
    return cosines(*self_centered_pair(reference, candidate, weight))


def rel_error_per_sample(reference: np.ndarray, candidate: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """||candidate - reference|| / ||reference|| per sample; 0 when both are zero, inf when only the reference is."""
    ref, cand = masked(reference, candidate, weight)
    diff, norm = np.linalg.norm(cand - ref, axis=1), np.linalg.norm(ref, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = diff / norm
    return np.where(norm == 0, np.where(diff == 0, 0.0, np.inf), rel)


def iou_per_sample(
    reference: np.ndarray, candidate: np.ndarray, threshold: float, weight: np.ndarray | None = None
) -> np.ndarray:
    """IoU of the maps thresholded at `threshold` (value > threshold is in), per sample; both empty = 1.0."""
    ref, cand = _flat(reference) > threshold, _flat(candidate) > threshold
    w = _weights(weight, ref)
    if w is not None:
        ref, cand = ref & (w > 0), cand & (w > 0)
    inter, union = (ref & cand).sum(axis=1), (ref | cand).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def abs_error_per_sample(
    reference: np.ndarray, candidate: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max |c - r|, sum |c - r|, elements counted) per sample: max_abs and mean_abs aggregate from these."""
    ref, cand = masked(reference, candidate, weight)
    d = np.abs(cand - ref)
    w = _weights(weight, ref)
    count = np.full(ref.shape[0], ref.shape[1], np.int64) if w is None else (w > 0).sum(axis=1)
    return (d.max(axis=1) if d.shape[1] else np.zeros(len(d))), d.sum(axis=1), count


def max_abs(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest |candidate - reference| over every element."""
    d = np.abs(_flat(candidate) - _flat(reference))
    return float(d.max()) if d.size else 0.0


def mean_abs(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean |candidate - reference| over every element."""
    d = np.abs(_flat(candidate) - _flat(reference))
    return float(d.mean()) if d.size else 0.0


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Per-sample cosine, averaged over samples (the self-checks' one-number summary)."""
    c = cosine_per_sample(reference, candidate)
    return float(c.mean()) if c.size else 1.0


def cosine_overall(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Cosine of the whole set of outputs flattened into one vector each."""
    return float(cosines(_flat(reference).reshape(1, -1), _flat(candidate).reshape(1, -1))[0])


def is_classifier(output: np.ndarray, k: int = 1) -> bool:
    """True for (samples, classes) outputs with at least max(k, 2) classes: where top-k means something."""
    return output.ndim == 2 and output.shape[1] >= max(k, 2)


def topk_hits(reference: np.ndarray, candidate: np.ndarray, k: int = 1) -> np.ndarray | None:
    """Per sample: is the reference's top-1 class among the candidate's top-k? None if not (samples, classes)."""
    if not is_classifier(reference, k) or reference.shape != candidate.shape:
        return None
    ref_top1 = np.argmax(reference, axis=1)
    cand_topk = np.argsort(-np.asarray(candidate, np.float64), axis=1, kind="stable")[:, :k]
    return np.any(cand_topk == ref_top1[:, None], axis=1)


def topk_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 1) -> float | None:
    """Share of samples whose reference top-1 class is among the candidate's top-k classes."""
    hits = topk_hits(reference, candidate, k)
    return None if hits is None or not len(hits) else float(hits.mean())


def correct(output: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray | None:
    """Per sample: is the label among the output's top-k classes? None if not a classifier output."""
    labels = np.asarray(labels).reshape(-1)
    if not is_classifier(output, k) or len(labels) != len(output):
        return None
    topk = np.argsort(-np.asarray(output, np.float64), axis=1, kind="stable")[:, :k]
    return np.any(topk == labels[:, None].astype(np.int64), axis=1)


def accuracy(output: np.ndarray, labels: np.ndarray, k: int = 1) -> float | None:
    """Share of samples whose label is among the output's top-k classes; None if not a classifier output."""
    hits = correct(output, labels, k)
    return None if hits is None or not len(hits) else float(hits.mean())


# -- aggregation -----------------------------------------------------------------------------------


def spread(values: np.ndarray, worst: str = "min") -> tuple[float, float, float] | None:
    """(worst, mean, 5th percentile from the worst end) of per-sample values, NaN-free; None if empty."""
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    if not v.size:
        return None
    if worst == "min":
        return float(v.min()), float(v.mean()), float(np.percentile(v, 5))
    with np.errstate(invalid="ignore"):
        return float(v.max()), float(v.mean()), float(np.percentile(v, 95))


def worst_indices(values: np.ndarray, worst: str = "min", count: int = 3) -> list[int]:
    """Positions of the `count` worst values (NaN last)."""
    v = np.asarray(values, np.float64)
    key = np.where(np.isnan(v), np.inf, v if worst == "min" else -v)
    return [int(i) for i in np.argsort(key, kind="stable")[:count]]


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion successes/n: sound at 0/n and n/n, unlike p +- z*se."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_drop_interval(
    ref_correct: np.ndarray, cand_correct: np.ndarray, z: float = Z95
) -> tuple[float, float] | None:
    """95% interval of the accuracy drop (reference - candidate) from the paired per-sample outcomes.

    Agresti-Min's adjusted Wald interval: only discordant samples (b: the reference right and the candidate
    wrong, c: the other way) carry information; adding 0.5 to each keeps the interval honest when there are
    none (plain Wald would claim [0, 0] from a handful of samples)."""
    r, c_ok = np.asarray(ref_correct, bool), np.asarray(cand_correct, bool)
    n = len(r)
    if n == 0:
        return None
    b, c = float(np.sum(r & ~c_ok)) + 0.5, float(np.sum(~r & c_ok)) + 0.5
    m = n + 2.0
    diff = (b - c) / m
    se = math.sqrt(max((b + c) - (b - c) ** 2 / m, 0.0)) / m
    return max(-1.0, diff - z * se), min(1.0, diff + z * se)


# -- sensitivity of the reference ------------------------------------------------------------------


@dataclass(frozen=True)
class Sensitivity:
    """How much the reference's outputs depend on its inputs, over the dataset."""

    samples: int
    distinct_top1: int | None  # None when the output is not (samples, classes)
    top1_share: float | None  # share of samples in the most common top-1 class
    centered_spread: float  # RMS(reference - its mean) / RMS(reference); 0 when outputs ignore the input

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "distinct_top1": self.distinct_top1,
            "top1_share": self.top1_share,
            "centered_spread": self.centered_spread,
        }


def sensitivity(reference: np.ndarray, classification: bool = True) -> Sensitivity:
    """The reference's centered spread, and (for a classification output only) its distinct top-1 classes:
    a regression output's argmax is no class, and a constant one says nothing about the input."""
    ref = _flat(reference)
    n = int(ref.shape[0])
    raw = float(np.sqrt(np.mean(ref**2))) if ref.size else 0.0
    centered = float(np.sqrt(np.mean((ref - ref.mean(axis=0, keepdims=True)) ** 2))) if ref.size else 0.0
    ratio = centered / raw if raw > 0 else 0.0
    distinct = share = None
    if classification and is_classifier(np.asarray(reference)) and n:
        counts = np.bincount(np.argmax(np.asarray(reference), axis=1))
        distinct, share = int(np.count_nonzero(counts)), float(counts.max() / n)
    return Sensitivity(n, distinct, share, ratio)


def insensitive_reason(s: Sensitivity, min_spread: float = MIN_CENTERED_SPREAD) -> str | None:
    """Plain-language reason the reference cannot tell a good engine from a broken one, or None."""
    if s.samples > 1 and s.distinct_top1 == 1:
        return (
            f"agreement figures cannot tell a good engine from a broken one: "
            f"all {s.samples} inputs give the same top-1 class"
        )
    if s.samples > 1 and s.centered_spread < min_spread:
        return (
            f"agreement figures cannot tell a good engine from a broken one: the reference's outputs barely "
            f"depend on the input (centered spread {s.centered_spread:.2g} of the output magnitude)"
        )
    return None


def uninformative_gates(s: Sensitivity, min_spread: float = MIN_CENTERED_SPREAD) -> set[str]:
    """Gates whose figure the reference's insensitivity makes meaningless (report a warning, keep the gate)."""
    gates: set[str] = set()
    if s.samples > 1 and s.distinct_top1 == 1:
        gates |= {"top1_agreement_min", "top5_agreement_min"}
    if s.samples > 1 and s.centered_spread < min_spread:
        gates |= {"cosine_min", "rel_error_max", "top1_agreement_min", "top5_agreement_min"}
    return gates
