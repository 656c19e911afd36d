"""Agreement figures between a transformed model and its FP32 reference, for the reduced-precision kinds.

`runtimes.onnx.io.check_agreement` is a pass/fail check with tight tolerances, right for
transformations that must not change the numbers (simplify, surgery). INT8 and
FP16 conversions change them by design, so quantize.qdq, onnx.fp16 and
build.tensorrt report figures (max and mean absolute difference, cosine
similarity, the reference's scale) on a seeded input and fail only on what is
plainly broken (non-finite values, wrong shapes) or on a loose tolerance the
recipe sets. `validate` is the place for real gates on real data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np


def figures(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | bool]:
    """max_abs, mean_abs, cosine (of the whole output flattened), ref_max_abs and finite, as plain floats.

    The figures come from `stages.common.metrics` (one definition of cosine and one zero-vector rule for every
    self-check and for validate)."""
    from stages.common import metrics as M

    ref = np.asarray(reference, dtype=np.float64).reshape(1, -1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(1, -1)
    finite = bool(np.isfinite(cand).all())
    if not finite or not np.isfinite(ref).all():
        return {
            "max_abs": float("inf"),
            "mean_abs": float("inf"),
            "cosine": float("nan"),
            "ref_max_abs": float(np.nanmax(np.abs(ref))) if ref.size else 0.0,
            "finite": finite,
        }
    return {
        "max_abs": M.max_abs(ref, cand),
        "mean_abs": M.mean_abs(ref, cand),
        "cosine": M.cosine_overall(ref, cand),
        "ref_max_abs": float(np.abs(ref).max()) if ref.size else 0.0,
        "finite": True,
    }


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    max_abs: float | None = None,
    min_cosine: float | None = None,
) -> dict[str, dict]:
    """Figures per output; ValueError for a missing output, a shape mismatch, non-finite values or a failed bound."""
    out = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise ValueError(f"output {name}: missing from the candidate (has: {', '.join(candidate) or 'none'})")
        cand = np.asarray(candidate[name])
        if cand.shape != np.asarray(ref).shape:
            raise ValueError(f"output {name}: shape {cand.shape} != reference shape {np.asarray(ref).shape}")
        f = figures(ref, cand)
        if not f["finite"]:
            raise ValueError(f"output {name}: the candidate produced non-finite values")
        if max_abs is not None and f["max_abs"] > max_abs:
            raise ValueError(
                f"output {name}: max abs diff {f['max_abs']:.4g} > {max_abs:g} "
                f"(cosine {f['cosine']:.5f}, reference scale {f['ref_max_abs']:.4g})"
            )
        if min_cosine is not None and f["cosine"] < min_cosine:
            raise ValueError(
                f"output {name}: cosine {f['cosine']:.5f} < {min_cosine:g} (max abs diff {f['max_abs']:.4g})"
            )
        out[name] = {k: (round(v, 7) if isinstance(v, float) else v) for k, v in f.items()}
    return out


def compare_onnx(
    reference: Path | str,
    candidate: Path | str,
    feeds: Mapping[str, np.ndarray],
    max_abs: float | None = None,
    min_cosine: float | None = None,
) -> dict[str, dict]:
    """Run both ONNX files in ONNX Runtime (CPU) on `feeds` and compare every output of the reference.

    Feeds are cast to each model's input types (an FP16 model without FP32 I/O takes float16).
    """
    from stages.runtimes.dtypes import float_dtype_of_ort
    from stages.runtimes.onnx.io import run_onnx, session_from_onnx

    ref = run_onnx(session_from_onnx(reference), feeds)
    session = session_from_onnx(candidate)
    types = {i.name: float_dtype_of_ort(i.type) for i in session.get_inputs()}
    cand = run_onnx(session, {k: v.astype(types[k]) if types.get(k) is not None else v for k, v in feeds.items()})
    return compare_outputs(ref, cand, max_abs, min_cosine)


def worst(per_output: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The summary line: the largest max_abs and the smallest cosine over all outputs."""
    if not per_output:
        return {}
    return {
        "max_abs": max(float(f["max_abs"]) for f in per_output.values()),
        "cosine": min(float(f["cosine"]) for f in per_output.values()),
    }
