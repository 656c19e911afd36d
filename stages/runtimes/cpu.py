"""This machine's CPU as it matters to numerics and timings, read without importing anything heavy.

Kept apart from the runners so a stage's `toolchain()` (called on every
cached run) can read it without pulling in numpy.
"""

from __future__ import annotations

import functools
import os

ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model = "unknown"
    flags: frozenset[str] = frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
                if model != "unknown" and flags:
                    break
    except OSError:
        pass
    return model, flags


def cpu_identity() -> dict[str, str]:
    """CPU model name and the ISA flags that change kernels and default precision, from /proc/cpuinfo."""
    model, flags = _cpuinfo()
    return {
        "cpu": model,
        "cpu_flags": " ".join(f for f in ISA_FLAGS if f in flags) or "none",
        "cpus": str(available_cpus()),
    }
