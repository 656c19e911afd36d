"""Timing an engine on a shared machine: the measurement, its noise meter and the retry rule.

Timing follows OpenVINO's benchmark_app: warm-up first, then at least
``min_seconds`` of inference. The machine is shared, so every measurement also
records how much CPU *other* processes took meanwhile (`CpuMeter`) and is
repeated when that exceeds a small share of one core (`measure`). Runners
supply only the loop; every runner's timings mean the same thing.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import numpy as np

# Re-measure when other processes took more than this share of one core.
OTHER_CPU_LIMIT = 0.08
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Timing:
    """One measurement: latencies per request (p5 and p95 bound the spread a plot draws), throughput in
    samples/s, and how noisy the machine was."""

    mode: str
    batch: int
    requests: int  # inference requests in flight
    iterations: int  # inferences measured (each of `batch` samples)
    seconds: float  # wall time of the measured loop
    p5_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float  # samples per second
    cpu_other_fraction: float  # CPU other processes used meanwhile, in cores (0.25 = a quarter of one core)
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class CpuMeter:
    """CPU time other processes use on our CPUs while we measure.

    Busy jiffies of the CPUs in our affinity mask (/proc/stat: user, nice, system,
    irq, softirq and steal) minus our own process's CPU time (getrusage, all
    threads), over the wall time: 0.0 on a quiet machine, 1.0 when another
    process kept one core busy. Returns None where /proc/stat is missing.
    """

    def __init__(self) -> None:
        self.tick = 1.0 / os.sysconf("SC_CLK_TCK")
        try:
            self.cpus: set[int] | None = set(os.sched_getaffinity(0))
        except AttributeError:
            self.cpus = None
        self._start: tuple[float, float, float] | None = None

    def _busy(self) -> float | None:
        try:
            with open("/proc/stat") as f:
                lines = [ln.split() for ln in f if ln.startswith("cpu")]
        except OSError:
            return None
        per_cpu = {int(p[0][3:]): p for p in lines if p[0] != "cpu"}
        rows = [per_cpu[c] for c in sorted(self.cpus or ()) if c in per_cpu] or [p for p in lines if p[0] == "cpu"]
        busy = 0
        for p in rows:
            v = [int(x) for x in p[1:]] + [0] * 8
            busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
        return busy * self.tick

    @staticmethod
    def _own() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def start(self) -> None:
        busy = self._busy()
        self._start = None if busy is None else (busy, self._own(), time.perf_counter())

    def stop(self) -> tuple[float, float] | None:
        """(other processes' CPU in cores, the measurement's resolution in cores), or None if unknown."""
        busy = self._busy()
        if self._start is None or busy is None:
            return None
        b0, o0, t0 = self._start
        wall = max(time.perf_counter() - t0, 1e-9)
        other = max(0.0, (busy - b0) - (self._own() - o0)) / wall
        # /proc/stat counts in ticks: each CPU's count may be off by one tick at each end.
        resolution = 2 * len(self.cpus or (0,)) * self.tick / wall
        return other, resolution


LoopFn = Callable[[float], "tuple[list[float], int, float]"]  # min_seconds -> (latencies ms, iterations, wall s)


def measure(
    loop: LoopFn,
    *,
    mode: str,
    batch: int,
    requests: int,
    min_seconds: float,
    max_attempts: int | None = None,
    other_limit: float | None = None,
) -> Timing:
    """Run `loop` until other processes stayed under `other_limit` cores (at most `max_attempts` times;
    defaults: the module's OTHER_CPU_LIMIT and MAX_ATTEMPTS, read at call time).

    Keeps the attempt with the least interference; `Timing.attempts` says how many ran.
    """
    max_attempts = max(1, max_attempts or MAX_ATTEMPTS)
    other_limit = OTHER_CPU_LIMIT if other_limit is None else other_limit
    best: Timing | None = None
    for attempt in range(1, max_attempts + 1):
        meter = CpuMeter()
        meter.start()
        latencies, iterations, seconds = loop(min_seconds)
        noise = meter.stop()
        other, resolution = noise if noise is not None else (0.0, 0.0)
        lat = sorted(latencies) or [0.0]
        timing = Timing(
            mode=mode,
            batch=batch,
            requests=requests,
            iterations=iterations,
            seconds=seconds,
            p5_ms=percentile(lat, 5),
            p50_ms=percentile(lat, 50),
            p90_ms=percentile(lat, 90),
            p95_ms=percentile(lat, 95),
            p99_ms=percentile(lat, 99),
            throughput=batch * iterations / max(seconds, 1e-9),
            cpu_other_fraction=other,
            attempts=attempt,
        )
        if best is None or timing.cpu_other_fraction < best.cpu_other_fraction:
            best = timing
        if other - resolution <= other_limit:
            break
    assert best is not None
    return Timing(**{**asdict(best), "attempts": attempt})


def percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile, as benchmark_app computes it."""
    index = max(0, int(np.ceil(len(sorted_values) * percent / 100)) - 1)
    return float(sorted_values[index])


def timed_loop(step: Callable[[], None]) -> LoopFn:
    """A synchronous loop of `step`, each call timed: latency mode, and ORT's throughput mode."""

    def loop(min_seconds: float) -> tuple[list[float], int, float]:
        times: list[float] = []
        clock = time.perf_counter
        start = clock()
        while True:
            t0 = clock()
            step()
            t1 = clock()
            times.append((t1 - t0) * 1e3)
            if t1 - start >= min_seconds:
                return times, len(times), t1 - start

    return loop


def batch_of(feeds: Mapping[str, np.ndarray]) -> int:
    """The batch of a feed dict: the first input's leading dim (1 for a scalar or no input)."""
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1
