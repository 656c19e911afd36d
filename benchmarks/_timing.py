"""Side-by-side timing on a shared machine: interleaved runs, medians, contention checks.

Every variant is measured in the same session, round-robin, so a noisy
neighbour slows all of them alike; a round during which other processes took
more than 8% of a core is thrown away and measured again.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable

CLK = os.sysconf("SC_CLK_TCK")
CONTENTION_LIMIT = 0.08  # of one core


def _busy_seconds() -> float:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return (sum(parts[:8]) - idle) / CLK


def cpu_seconds() -> float:
    """CPU time of this process (user + system): subtracted from the machine's busy time to get others'."""
    times = os.times()
    return times.user + times.system


def throughput(fn: Callable[[], Any], seconds: float, batch: int, warmup: int = 3) -> tuple[float, float]:
    """Images/s of `fn` (one batch of `batch` per call) over at least `seconds`, and others' CPU in cores."""
    for _ in range(warmup):
        fn()
    busy0, own0, t0, n = _busy_seconds(), cpu_seconds(), time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    wall = time.perf_counter() - t0
    others = max(0.0, (_busy_seconds() - busy0) - (cpu_seconds() - own0)) / wall
    return n * batch / wall, others


@dataclass
class Sample:
    seconds: float
    max_rss_mb: float
    other_cpu: float  # CPU taken by other processes during the run, in cores
    returncode: int


def run_once(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> Sample:
    busy0 = _busy_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    busy = _busy_seconds() - busy0
    own = usage.ru_utime + usage.ru_stime
    return Sample(
        wall, usage.ru_maxrss / 1024, max(0.0, busy - own) / wall if wall else 0.0, os.waitstatus_to_exitcode(status)
    )


@dataclass
class Variant:
    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def max_rss(self) -> float:
        return max(s.max_rss_mb for s in self.samples)


def measure(variants: list[Variant], repeat: int = 5, retries: int = 3, warmup: bool = True) -> None:
    """Round-robin `repeat` rounds; re-measure a round when others took > 8% of a core."""
    if warmup:
        for v in variants:
            run_once(v.cmd, v.env, v.cwd)
    for _ in range(repeat):
        for attempt in range(retries + 1):
            round_ = [run_once(v.cmd, v.env, v.cwd) for v in variants]
            worst = max(s.other_cpu for s in round_)
            if worst <= CONTENTION_LIMIT or attempt == retries:
                break
            time.sleep(1.0)
        for v, s in zip(variants, round_):
            if s.returncode != 0:
                raise RuntimeError(f"{v.name}: {' '.join(v.cmd)} exited {s.returncode}")
            v.samples.append(s)


def table(variants: list[Variant], baseline: Variant | None = None) -> str:
    rows = [
        f"{'variant':44} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MB':>11} {'others, cores':>13}"
        + (f" {'x ' + baseline.name:>16}" if baseline else "")
    ]
    for v in variants:
        secs = [s.seconds for s in v.samples]
        line = (
            f"{v.name:44} {v.median:9.3f} {min(secs):7.3f} {max(secs):7.3f} {v.max_rss:11.1f} "
            f"{max(s.other_cpu for s in v.samples):13.2f}"
        )
        if baseline:
            line += f" {v.median / baseline.median:16.2f}"
        rows.append(line)
    return "\n".join(rows)
