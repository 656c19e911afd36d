"""validate's timing: latency at batch 1 and throughput at each requested batch, on real samples tiled.

Each timing names the input shapes it fed (`input`: {name: shape}), since a
figure per batch depends on the sample shape too (the largest shape group).

Each timing holds the CPU slot the stage was given (validate is `exclusive`); a
timing that cannot run, or that other processes disturbed, is a warning in the
report, never a failure.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import one_line
from stages.validation.samples import tile


@dataclass(frozen=True)
class Timings:
    """Each engine's timings ("candidate", "reference": one entry per mode and batch, with the input shapes
    fed), and the warnings: a batch outside the model's range, a timing that failed or was disturbed."""

    timing: dict[str, list[dict[str, Any]]]
    warnings: tuple[str, ...]


def time_engines(
    p: Any,
    candidate: Any,
    reference: Any,
    inputs: dict[str, np.ndarray],
    bdim: str | int | None,
    model: Any,
    ctx: Any,
) -> Timings:
    """Latency (p.latency) and throughput (p.throughput_batches) of the candidate, and of the reference if asked."""
    from stages.runtimes.measure import OTHER_CPU_LIMIT

    warnings: list[str] = []

    def allowed(b: int) -> bool:
        if isinstance(bdim, int):
            return b == bdim
        if isinstance(bdim, str):
            r = model.dims[bdim]
            return r.min <= b <= r.max
        return b == 1

    jobs: list[tuple[str, Any, str, int]] = []
    runners = [("candidate", candidate)] + ([("reference", reference)] if p.time_reference else [])
    for who, runner in runners:
        if p.latency:
            jobs.append((who, runner, "latency", latency_batch(bdim, model)))
        for b in p.throughput_batches:
            if allowed(b):
                jobs.append((who, runner, "throughput", b))
            elif who == "candidate":
                warnings.append(f"throughput at batch {b} skipped: outside the model's batch range")
    timing: dict[str, list[dict[str, Any]]] = {"candidate": [], "reference": []}
    for i, (who, runner, mode, b) in enumerate(jobs):
        ctx.progress(i, len(jobs), f"timing {who} {mode} b{b}")
        batch = tile(inputs, b)
        try:
            t = runner.benchmark(batch, mode, p.min_seconds, p.warmup)
        except Exception as exc:  # noqa: BLE001 - a timing that cannot run is reported, not fatal
            warnings.append(f"timing of the {who} ({mode}, batch {b}) failed: {one_line(exc, 300)}")
            continue
        timing[who].append({**t.as_dict(), "input": input_shapes(batch)})
        if t.cpu_other_fraction > OTHER_CPU_LIMIT:
            warnings.append(
                f"timing of the {who} ({mode}, batch {b}) is noisy: other processes used "
                f"{t.cpu_other_fraction:.2f} of a core meanwhile (best of {t.attempts} attempts)"
            )
    ctx.progress(len(jobs), len(jobs), "timing")
    return Timings(timing, tuple(warnings))


def latency_batch(bdim: str | int | None, model: Any) -> int:
    """The batch latency is timed (and layers profiled) at: 1, unless the model's batch range excludes it (then
    its fixed batch, or the smallest it takes)."""
    if isinstance(bdim, int):
        return bdim
    if isinstance(bdim, str):
        r = model.dims[bdim]
        return 1 if r.min <= 1 <= r.max else int(r.min)
    return 1


def input_shapes(batch: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """{input name: shape} of what a timing fed the engine: a figure per batch means little without it
    (the largest shape group is tiled, so a sequence length or image size is this group's)."""
    return {name: [int(d) for d in array.shape] for name, array in batch.items()}


def environment(threads: int | None, candidate: Any, reference: Any) -> dict[str, Any]:
    """CPU identity, threads, runtime versions and both engines' precisions: what the timings depend on."""
    from stages.runtimes.cpu import available_cpus, cpu_identity

    env: dict[str, Any] = dict(cpu_identity())
    env["threads"] = threads or available_cpus()
    for dist in ("onnxruntime", "openvino"):
        try:
            env[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            env[dist] = None
    env["candidate_precision"] = candidate.precision
    env["reference_precision"] = reference.precision
    return env


def artifact_bytes(path: Path) -> int:
    """On-disk size of the candidate (an IR directory counts model.xml + model.bin + sidecars)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
