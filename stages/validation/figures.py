"""One output's figures from its per-group parts: per sample first, then over all samples and per group.

Which figures an output gets follows its role: every output gets max/mean abs
error, cosine, relative error and centered cosine (the reference's mean taken
within each shape group); a classification output gets top-1/top-5 agreement and,
with labels, both engines' accuracy and the drop, each with a 95% interval; a
dense output gets the IoU of its maps thresholded at `dense_threshold` (applied to
the outputs as they are: probabilities, logits or heat maps alike). A per-sample
figure is reported as its worst sample (what a gate reads), its mean and its 5th
percentile from the worst end (`cosine`, `cosine_mean`, `cosine_p5`;
`rel_error_p95` for an error). The per-sample values themselves travel in the
entry's `per_sample` (in sample order, with each sample's `index`): validate
plots them and moves them to its report's `plots` section.

Two exceptions, both named in the entry and the report:
- a sample alone in its shape group (photos at native sizes) has no group mean
  to center on: its centered cosine centers each map on its own reference mean
  (`self_centered`: how many samples), so a constant candidate scores 0;
- an output with fewer than `LOW_DIM` elements per sample (a (batch, 1) score, a
  3-class logit) gets cosine, centered cosine and relative error over the whole
  output, all samples stacked into one vector (`dataset_level`): per sample they
  are only a sign, or blow up where one reference value is near 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.common import metrics as M
from stages.validation.numerics import Part

# Per-sample figure -> which end is worst.
PER_SAMPLE = {"cosine": "min", "centered_cosine": "min", "rel_error": "max", "iou": "min"}
_PERFECT = {"cosine": 1.0, "centered_cosine": 1.0, "rel_error": 0.0, "iou": 1.0}
PROPORTIONS = ("top1_agreement", "top5_agreement", "accuracy", "reference_accuracy")
WORST_LISTED = 3
# Below this many elements per sample, cosine and relative error are taken over the whole output.
LOW_DIM = 8
DATASET_LEVEL = ("cosine", "centered_cosine", "rel_error")


def _tail(figure: str) -> str:
    return "p5" if PER_SAMPLE[figure] == "min" else "p95"


def output_entry(parts: list[Part], role: str, labelled: bool, dense_threshold: float) -> dict[str, Any]:
    """figures, intervals, proportion counts, per-group figures, worst samples and the reference's sensitivity."""
    samples: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "cosine",
            "centered_cosine",
            "rel_error",
            "iou",
            "max",
            "sum",
            "count",
            "top1",
            "top5",
            "cand_ok",
            "ref_ok",
            "index",
            "group",
        )
    }
    finite_ref, scale, flat_ref, flat_cand = True, 0.0, [], []
    stacked: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
    self_centered = 0
    low_dim = max(int(np.prod(p.reference[0].shape[1:])) for p in parts) < LOW_DIM
    for part in parts:
        ref, cand, w, index, labels = part.stacked()
        finite_ref &= bool(np.isfinite(ref).all()) if ref.dtype.kind in "fc" else True
        with np.errstate(invalid="ignore", over="ignore"):
            samples["cosine"].append(M.cosine_per_sample(ref, cand, w))
            samples["rel_error"].append(M.rel_error_per_sample(ref, cand, w))
            centered = M.centered_pair(ref, cand, w) if len(ref) > 1 else M.self_centered_pair(ref, cand, w)
            self_centered += len(ref) == 1
            samples["centered_cosine"].append(M.cosines(*centered))
            if low_dim:
                stacked.setdefault(part.group, []).append((part.group, *M.masked(ref, cand, w), *centered))
            mx, total, count = M.abs_error_per_sample(ref, cand, w)
        samples["max"].append(mx)
        samples["sum"].append(total)
        samples["count"].append(count)
        if role == "dense":
            samples["iou"].append(M.iou_per_sample(ref, cand, dense_threshold, w))
        if role == "classification":
            for k, key in ((1, "top1"), (5, "top5")):
                hits = M.topk_hits(ref, cand, k)
                if hits is not None:
                    samples[key].append(hits)
            if labelled and labels is not None:
                c_ok, r_ok = M.correct(cand, labels), M.correct(ref, labels)
                if c_ok is not None and r_ok is not None:
                    samples["cand_ok"].append(c_ok)
                    samples["ref_ok"].append(r_ok)
        samples["index"].append(index)
        samples["group"].append(np.array([part.group] * len(index), dtype=object))
        magnitude = np.abs(ref if w is None else np.where(w > 0, ref, 0))
        scale = max(scale, float(np.max(magnitude)) if ref.size else 0.0)
        flat_ref.append(ref.reshape(-1))
        flat_cand.append(cand.reshape(-1))
    n = sum(len(i) for i in samples["index"])
    s = {k: (np.concatenate(v) if v and sum(map(len, v)) == n else None) for k, v in samples.items()}
    figures = _figures(s, None)
    figures.update(
        shape=True,
        finite=True,
        reference_finite=finite_ref,
        output_scale=scale,
        cosine_overall=M.cosine_overall(np.concatenate(flat_ref)[None], np.concatenate(flat_cand)[None]),
    )
    group = s["group"]
    assert group is not None  # every part adds one group name per sample
    groups: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(group.tolist()):
        sel = group == key
        groups[key] = {"count": int(sel.sum()), "figures": _figures(s, sel)}
        if low_dim:
            groups[key]["figures"].update(_dataset_level(stacked[key]))
    if low_dim:
        figures.update(_dataset_level([x for rows in stacked.values() for x in rows]))
        for name in DATASET_LEVEL:
            s[name] = None  # no per-sample worst: the figure is one number for the whole output
    return {
        "per_sample": _per_sample(s),
        "figures": figures,
        "intervals": _intervals(s),
        "counts": _counts(s),
        "groups": groups,
        "worst": _worst(s),
        "sensitivity": _sensitivity(parts, role),
        "dataset_level": list(DATASET_LEVEL) if low_dim else [],
        "self_centered": self_centered,
    }


def _per_sample(s: dict[str, np.ndarray | None]) -> dict[str, list[Any]]:
    """Each per-sample figure's values in sample order (`index`: the samples' indices in the dataset)."""
    index = s["index"]
    assert index is not None  # every part adds one index per sample
    order = np.argsort(index, kind="stable")
    out: dict[str, list[Any]] = {"index": [int(i) for i in index[order]]}
    for name in PER_SAMPLE:
        v = s[name]
        if v is not None and v.size:
            out[name] = [float(x) for x in v[order]]
    return out


def _dataset_level(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Cosine, centered cosine (each group on its own mean) and relative error of all these samples stacked
    into one vector; their mean and tail are the same number, so they are left out."""
    arrays = [r[1:] for r in rows]  # (reference, candidate, centered reference, centered candidate)
    ref, cand, a, b = (np.concatenate([x[i].reshape(-1) for x in arrays])[None] for i in range(4))
    out: dict[str, Any] = {
        "cosine": float(M.cosines(ref, cand)[0]),
        "centered_cosine": float(M.cosines(a, b)[0]),
        "rel_error": float(M.rel_error_per_sample(ref, cand)[0]),
    }
    for name in DATASET_LEVEL:
        out[f"{name}_mean"] = out[f"{name}_{_tail(name)}"] = None
    return out


def _figures(s: dict[str, np.ndarray | None], sel: np.ndarray | None) -> dict[str, Any]:
    def pick(key: str) -> np.ndarray | None:
        v = s[key]
        return None if v is None else (v if sel is None else v[sel])

    fig: dict[str, Any] = {}
    for name, worst in PER_SAMPLE.items():
        v = pick(name)
        agg = M.spread(v, worst) if v is not None else None
        fig[name], fig[f"{name}_mean"], fig[f"{name}_{_tail(name)}"] = agg if agg else (None, None, None)
    mx, total, count = pick("max"), pick("sum"), pick("count")
    fig["max_abs"] = float(mx.max()) if mx is not None and mx.size else 0.0
    fig["mean_abs"] = float(total.sum() / max(int(count.sum()), 1)) if total is not None and count is not None else 0.0
    for key, name in (
        ("top1", "top1_agreement"),
        ("top5", "top5_agreement"),
        ("cand_ok", "accuracy"),
        ("ref_ok", "reference_accuracy"),
    ):
        v = pick(key)
        fig[name] = float(v.mean()) if v is not None and v.size else None
    acc, ref_acc = fig["accuracy"], fig["reference_accuracy"]
    fig["accuracy_drop"] = None if acc is None or ref_acc is None else ref_acc - acc
    return fig


def _counts(s: dict[str, np.ndarray | None]) -> dict[str, dict[str, int]]:
    """Successes and samples of each proportion (what a one-sample flip changes), and the paired drop's parts."""
    out = {}
    for key, name in (
        ("top1", "top1_agreement"),
        ("top5", "top5_agreement"),
        ("cand_ok", "accuracy"),
        ("ref_ok", "reference_accuracy"),
    ):
        v = s[key]
        if v is not None and v.size:
            out[name] = {"successes": int(v.sum()), "n": int(v.size)}
    return out


def _intervals(s: dict[str, np.ndarray | None]) -> dict[str, list[float]]:
    out = {}
    for name, c in _counts(s).items():
        interval = M.wilson(c["successes"], c["n"])
        if interval:
            out[name] = list(interval)
    if s["cand_ok"] is not None and s["ref_ok"] is not None and s["cand_ok"].size:
        drop = M.paired_drop_interval(s["ref_ok"], s["cand_ok"])
        if drop:
            out["accuracy_drop"] = list(drop)
    return out


def _worst(s: dict[str, np.ndarray | None]) -> list[dict[str, Any]]:
    index, group = s["index"], s["group"]
    assert index is not None and group is not None  # every part adds one of each per sample
    rows = []
    for name, worst in PER_SAMPLE.items():
        v = s[name]
        if v is None or not v.size or np.isnan(v).all():
            continue
        for i in M.worst_indices(v, worst, WORST_LISTED):
            if not np.isnan(v[i]) and v[i] != _PERFECT[name]:  # a perfect sample is nobody's worst
                rows.append({"figure": name, "index": int(index[i]), "group": group[i], "value": float(v[i])})
    return rows


def _sensitivity(parts: list[Part], role: str) -> M.Sensitivity | None:
    """The reference's sensitivity over its largest part (one output shape: one mean to compare against);
    distinct top-1 classes only count for a classification output."""
    if not parts:
        return None
    ref = max((p.stacked()[0] for p in parts), key=len)
    return M.sensitivity(ref, classification=role == "classification")


def failed_entry(finite: bool, note: str) -> dict[str, Any]:
    """An output whose shape check failed: no figures beyond the checks."""
    return {
        "per_sample": {},
        "figures": {"shape": False, "finite": finite, "note": note},
        "intervals": {},
        "counts": {},
        "groups": {},
        "worst": [],
        "sensitivity": None,
        "dataset_level": [],
        "self_centered": 0,
    }
