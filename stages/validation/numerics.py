"""validate's numerics pass: every shape group through both engines, batch by batch, outputs kept per group.

Nothing is concatenated across groups: an output's samples are kept as
`Part`s, one per (shape group, output shape), each holding that part's
reference and candidate outputs, the samples' dataset indices and labels, and
the weight that leaves padded positions out (`mask_input`: where the mask is 0,
positions (batch, seq) of any output whose leading dims are the mask's (batch,
seq), per-token logits (batch, seq) included, do not count; a rank-2 output
that does not follow the mask's length in every batch, a (batch, classes) head,
is never masked). The declared points (min/opt/max) are run too, for the shape
and finiteness checks: a point counts as checked on the dataset only if a batch
of exactly its input shapes ran; else it runs on dataset samples tiled to its
shape where a group has it, else on seeded random inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pipeline.errors import one_line
from stages.validation import samples as SG


@dataclass
class Part:
    """One output's samples from one shape group (same output shape): reference, candidate, indices, labels."""

    group: str
    reference: list[np.ndarray] = field(default_factory=list)
    candidate: list[np.ndarray] = field(default_factory=list)
    weight: list[np.ndarray] | None = None
    index: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] | None = None

    def stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
        w = None if self.weight is None else np.concatenate(self.weight)
        labels = None if self.labels is None else np.concatenate(self.labels)
        return (np.concatenate(self.reference), np.concatenate(self.candidate), w, np.concatenate(self.index), labels)


@dataclass
class Collected:
    """Per output: its parts, whether its outputs are per sample, finiteness and the first shape problem."""

    parts: dict[str, dict[tuple[str, tuple[int, ...]], Part]]
    per_sample: dict[str, bool]
    finite: dict[str, bool]
    shape_notes: dict[str, str]
    batches: list[int]
    ran: set[tuple[tuple[str, tuple[int, ...]], ...]] = field(default_factory=set)  # full input shapes run
    unmasked: set[str] = field(default_factory=set)  # rank-2 outputs that did not follow the mask's shape


def mask_name(wanted: str | bool | None, inputs: list[str]) -> str | None:
    """`mask_input`: a named input (checked), false for none, or by default an input called attention_mask."""
    if wanted is False:
        return None
    if isinstance(wanted, str):
        if wanted not in inputs:
            raise ValueError(f"mask_input {wanted!r} is not an input of the model (inputs: {', '.join(inputs)})")
        return wanted
    return "attention_mask" if "attention_mask" in inputs else None


def shapes_key(feeds: dict[str, np.ndarray]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The full input shapes of one batch, as a set member: what a declared point is matched against."""
    return tuple(sorted((k, tuple(np.shape(v))) for k, v in feeds.items()))


def weight_for(output: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
    """1/0 weights shaped like `output` from a (batch, seq) mask, for outputs shaped (batch, seq, ...)."""
    if mask is None or mask.ndim != 2 or output.ndim < 2 or output.shape[:2] != mask.shape:
        return None
    m = np.asarray(mask).reshape(mask.shape[0], mask.shape[1], *([1] * (output.ndim - 2))) != 0
    return np.broadcast_to(m, output.shape).astype(np.float32)


def run(
    groups: list[SG.Group],
    sizes: list[int],
    bdim: str | int | None,
    model: Any,
    reference: Any,
    candidate: Any,
    names: dict[str, str],
    mask: str | None,
    progress: Callable[[int, int, str], None],
) -> Collected:
    """Run every group's samples, re-batched within the group, through both engines."""
    outs = list(reference.output_names)
    col = Collected({o: {} for o in outs}, dict.fromkeys(outs, True), dict.fromkeys(outs, True), {}, [])
    plans = [(g, SG.schedule(len(g), sizes, bdim, model)) for g in groups]
    total, done = sum(len(p) for _, p in plans), 0
    for group, plan in plans:
        for start, count, size in plan:
            feeds = {k: SG.take(v, start, count, size) for k, v in group.inputs.items()}
            col.batches.append(size)
            col.ran.add(shapes_key(feeds))
            r = reference.infer(feeds)
            try:
                c = renamed(candidate.infer(feeds), names)
            except Exception as exc:  # noqa: BLE001 - an engine that rejects a declared shape fails the shape gate
                c = {}
                for o in outs:
                    col.shape_notes.setdefault(
                        o, f"batch {size} ({group.key}): the candidate raised {one_line(exc, 300)}"
                    )
            m = None if mask is None else feeds[mask][:count]
            for o in outs:
                _keep(col, o, group, r[o], c.get(o), start, count, size, m)
            done += 1
            progress(done, total, "numerics")
    for o in col.unmasked:  # a (batch, C) head whose C matched the sequence length in some batch by chance
        for part in col.parts[o].values():
            part.weight = None
    return col


def _keep(
    col: Collected,
    o: str,
    group: SG.Group,
    ro: Any,
    co: Any,
    start: int,
    count: int,
    size: int,
    mask: np.ndarray | None,
) -> None:
    if co is None:
        col.shape_notes.setdefault(o, "missing from the candidate")
        return
    ro, co = np.asarray(ro), np.asarray(co)
    if co.dtype.kind in "fc" and not np.isfinite(co).all():
        col.finite[o] = False
    if ro.shape != co.shape:
        col.shape_notes.setdefault(o, f"batch {size} ({group.key}): shape {co.shape} != reference {ro.shape}")
        return
    index = group.index[start : start + count]
    labels = None if group.labels is None else group.labels[start : start + count]
    if ro.ndim and ro.shape[0] == size:
        ro, co = ro[:count], co[:count]
    else:  # not one row per sample: the batch's whole output counts as one sample
        col.per_sample[o] = False
        ro, co, index, labels, mask = ro.reshape(1, -1), co.reshape(1, -1), index[:1], None, None
    key = (group.key, tuple(ro.shape[1:]))
    part = col.parts[o].get(key)
    w = weight_for(ro, mask)
    if mask is not None and ro.ndim == 2 and w is None:
        col.unmasked.add(o)
    if part is None:
        part = col.parts[o][key] = Part(
            group.key, weight=None if w is None else [], labels=None if labels is None else []
        )
    part.reference.append(ro)
    part.candidate.append(co)
    part.index.append(index)
    if part.weight is not None:
        part.weight.append(w if w is not None else np.ones(ro.shape, np.float32))
    if part.labels is not None and labels is not None:
        part.labels.append(labels)


def check_points(
    points: Sequence[str],
    ran: set[tuple[tuple[str, tuple[int, ...]], ...]],
    groups: list[SG.Group],
    model: Any,
    reference: Any,
    candidate: Any,
    names: dict[str, str],
) -> dict[str, Any]:
    """Run every declared point; one whose exact input shapes the numerics pass ran (`ran`, from
    `shapes_key`) is only recorded."""
    from stages.common import metrics as M
    from stages.runtimes.dtypes import random_array

    result: dict[str, Any] = {}
    for point in points:
        shapes = {t: model.shape(t, point) for t in model.tensors}
        batch = next(iter(shapes.values()))[0] if shapes and next(iter(shapes.values())) else 1
        group = next((g for g in groups if all(tuple(s[1:]) == g.inputs[t].shape[1:] for t, s in shapes.items())), None)
        wanted = {t: tuple(s) for t, s in shapes.items()}
        if any(all(dict(run).get(t) == s for t, s in wanted.items()) for run in ran):
            result[point] = {"shapes": shapes, "source": "dataset"}
            continue
        if group is not None:
            feeds, source = SG.tile(group.inputs, batch), "dataset samples, tiled"
        else:
            rng = np.random.default_rng(0)
            dtypes = {t: groups[0].inputs[t].dtype for t in shapes}
            feeds = {t: random_array(rng, s, dtypes[t]) for t, s in shapes.items()}
            source = "seeded random inputs (no samples of this shape)"
        r = reference.infer(feeds)
        try:
            c, error = renamed(candidate.infer(feeds), names), ""
        except Exception as exc:  # noqa: BLE001 - recorded as a failed shape check
            c, error = {}, f"the candidate raised {one_line(exc, 300)}"
        outs = {}
        for o, ro in r.items():
            co = c.get(o)
            ok = co is not None and np.shape(co) == np.shape(ro)
            outs[o] = {
                "shape": ok,
                "candidate_shape": None if co is None else list(np.shape(co)),
                "reference_shape": list(np.shape(ro)),
                "finite": bool(np.isfinite(co).all())
                if co is not None and np.asarray(co).dtype.kind in "fc"
                else co is not None,
                "max_abs": M.max_abs(ro, co) if ok and co is not None else None,
                "cosine": M.cosine(np.asarray(ro).reshape(1, -1), np.asarray(co).reshape(1, -1)) if ok else None,
                "error": error,
            }
        result[point] = {"shapes": shapes, "source": source, "outputs": outs}
    return result


@dataclass(frozen=True)
class OutputMatch:
    """Candidate output name -> reference output name, and the warning when the names differ and the outputs
    were matched by position."""

    names: dict[str, str]
    warnings: tuple[str, ...] = ()


def match_outputs(ref_names: list[str], cand_names: list[str]) -> OutputMatch:
    """The candidate's outputs by the reference's names: the same names, else the same count by position."""
    if not cand_names or set(ref_names) <= set(cand_names) or len(cand_names) != len(ref_names):
        return OutputMatch({n: n for n in cand_names})
    why = f"candidate outputs {cand_names} matched to reference outputs {ref_names} by position"
    return OutputMatch(dict(zip(cand_names, ref_names)), (why,))


def renamed(outputs: dict[str, np.ndarray], names: dict[str, str]) -> dict[str, np.ndarray]:
    return {names.get(k, k): v for k, v in outputs.items()}
