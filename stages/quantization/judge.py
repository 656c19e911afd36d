"""How quantize.search judges a candidate: validate's figures and gates on a split of `val`, and its latency.

The figures are validate's own (`validation.numerics` and `validation.outputs`:
the same roles, the same per-sample worst figures, the same gate table and
defaults for an INT8 candidate), so a trial that passes here passes the same
gates in a `validate` stage on the same samples. `val` is split once, by
position within each shape group: every `holdout_every`-th sample is held out
for the final confirmation and never used to choose.

The float reference's outputs are computed once per batch and remembered
(`RememberingRunner`): every trial reads the same batches.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from stages.quantization.choice import Latency, Verdict
from stages.validation import samples as SG


@dataclass(frozen=True)
class Splits:
    """`val` split into the samples the search chooses by and those held out to confirm its choice."""

    search: list[SG.Group]
    holdout: list[SG.Group]

    def counts(self) -> dict[str, int]:
        return {"search": sum(len(g) for g in self.search), "holdout": sum(len(g) for g in self.holdout)}


def split(groups: list[SG.Group], holdout_every: int) -> Splits:
    """Every `holdout_every`-th sample of the dataset held out (0: none), by its position in `val`, so shape
    groups smaller than `holdout_every` give theirs too."""
    search: list[SG.Group] = []
    holdout: list[SG.Group] = []
    for g in groups:
        held = (g.index % holdout_every == holdout_every - 1) if holdout_every else np.zeros(len(g), bool)
        for part, sel in ((search, ~held), (holdout, held)):
            if sel.any():
                labels = None if g.labels is None else g.labels[sel]
                part.append(SG.Group(g.key, {k: v[sel] for k, v in g.inputs.items()}, labels, g.index[sel]))
    if not search:
        raise ValueError("val has no samples left to search on once some are held out: add samples")
    return Splits(search, holdout)


class RememberingRunner:
    """A runner whose outputs for a batch it has seen are remembered (the float reference of every trial)."""

    def __init__(self, runner: Any):
        self.runner = runner
        self.output_names = list(runner.output_names)
        self.input_names = list(getattr(runner, "input_names", []))
        self._seen: dict[str, dict[str, np.ndarray]] = {}

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = hashlib.sha256()
        for name in sorted(feeds):
            a = np.ascontiguousarray(feeds[name])
            h.update(f"{name}{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        key = h.hexdigest()
        if key not in self._seen:
            self._seen[key] = self.runner.infer(feeds)
        return self._seen[key]


@dataclass(frozen=True)
class Gates:
    """What the gates are: validate's `gates` and `per_output` (None: the table's INT8 defaults per role)."""

    gates: dict[str, Any] | None
    per_output: dict[str, dict[str, Any]]
    labels_output: str | None = None


@dataclass
class Judge:
    """Judges candidates against one float reference on `val`'s splits, as validate would."""

    model: Any  # the recipe's ModelSpec
    reference: RememberingRunner
    splits: Splits
    gates: Gates
    mask: str | None
    dense_threshold: float = 0.5

    def entries(self, candidate: Any, which: str, progress: Callable[[int, int, str], None]) -> dict[str, Any]:
        """Each output's entry (role, figures, per-sample values, worst samples) on split `which`."""
        from stages.validation import numerics as N
        from stages.validation.outputs import judge_outputs
        from stages.validation.report import jsonable

        groups = self.splits.search if which == "search" else self.splits.holdout
        bdim = SG.batch_dim(self.model)
        sizes = SG.batch_sizes(self.model, bdim, None, ["opt"])
        match = N.match_outputs(self.reference.output_names, list(candidate.output_names))
        col = N.run(groups, sizes, bdim, self.model, self.reference, candidate, match.names, self.mask, progress)
        judged = judge_outputs(col, groups, self.model, self.gates.labels_output, self.dense_threshold, 1e-3)
        return {"outputs": jsonable(judged.entries), "labels_output": judged.labels_output}

    def verdicts(self, judged: Mapping[str, Any]) -> tuple[Verdict, ...]:
        """Every gate on every output, as validate decides it for an INT8 candidate."""
        import copy

        from stages.validation.gate_eval import evaluate

        outputs = copy.deepcopy(dict(judged["outputs"]))
        result = evaluate(
            self.gates.gates,
            self.gates.per_output,
            "int8",
            outputs,
            {},
            {},
            declared=self.model.roles,
            labels_output=self.gates.labels_output,
        )
        return tuple(
            Verdict(g.metric, g.output, g.observed, g.threshold, g.passed, g.failure()) for g in result.results
        )


def latency(runner: Any, feeds: Mapping[str, np.ndarray], mode: str, repeats: int, min_seconds: float) -> Latency:
    """The objective in ms (latency: p50 per request; throughput: ms per sample), over `repeats` timings: their
    median, and their range as the interval (5 repeats: the true median lies outside it 6% of the time)."""
    values = []
    for _ in range(max(1, repeats)):
        t = runner.benchmark(feeds, mode, min_seconds, 3)
        values.append(t.p50_ms if mode == "latency" else 1000.0 / max(t.throughput, 1e-9))
    return Latency(statistics.median(values), min(values), max(values))


def tail_margin(judged: Mapping[str, Any], verdicts: tuple[Verdict, ...], worst: int) -> float:
    """The smallest margin over `verdicts`, each per-sample gate's taken on the mean of its `worst` worst
    samples (in `judged`'s per-sample values) instead of the single worst."""
    from stages.quantization.choice import margin
    from stages.validation.gates import GATES, PER_SAMPLE

    margins = []
    for v in verdicts:
        gate = GATES[v.gate]
        values = judged["outputs"].get(v.output, {}).get("per_sample", {}).get(gate.figure)
        if v.gate in PER_SAMPLE and values:
            bad = -np.inf if gate.direction == "min" else np.inf
            a = np.array([x if isinstance(x, (int, float)) else np.nan for x in values], np.float64)
            a = np.sort(np.where(np.isfinite(a), a, bad))
            tail = a[:worst] if gate.direction == "min" else a[::-1][:worst]
            margins.append(margin(v.gate, float(tail.mean()), v.threshold, v.passed))
        else:
            margins.append(v.margin)
    return min(margins, default=float("inf"))
