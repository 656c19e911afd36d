"""What NVIDIA GPU and TensorRT this host has, found without importing tensorrt or touching CUDA state.

A TensorRT engine is compiled for one GPU model with one TensorRT version, so
`build.tensorrt` puts the GPU's identity in its key and refuses to run where
there is no GPU. The engine calls `toolchain()` and `unmet()` in its own
process, which must stay light and must not create a CUDA context before it
spawns workers, so the probe reads files and asks command-line tools:

- `/dev/nvidia[0-9]*` (device nodes) and `/proc/driver/nvidia/{version,gpus/*/information}` (kernel module),
- `nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader` (5 s timeout),
- `libcuda.so.1`'s `cuDriverGetVersion` through ctypes (the CUDA version the driver supports; no cuInit),
- `importlib.metadata` for the `tensorrt` distributions (never `import tensorrt`).

`CUDA_VISIBLE_DEVICES` picks the GPU nvidia-smi is asked about (its first
entry; nvidia-smi numbers GPUs in PCI order, as CUDA does with
`CUDA_DEVICE_ORDER=PCI_BUS_ID`). The result is cached once per process.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

SMI_QUERY = ("--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")
SMI_TIMEOUT_S = 5.0
# Wheels: `tensorrt` is a meta package over `tensorrt-cu12` / `tensorrt-cu13` (the CUDA major in the name).
TRT_DISTS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt_cu13_libs", "tensorrt_cu12_libs")
INSTALL_HINT = "pip install '.[tensorrt]' (on a host that reaches NVIDIA's package index)"


@dataclass(frozen=True)
class GpuProbe:
    """The host's GPU and TensorRT as far as they can be known without CUDA; None where unknown."""

    gpu: str | None = None  # "NVIDIA A100-SXM4-80GB"
    compute_capability: str | None = None  # "8.0"
    driver: str | None = None  # "535.104.05"
    cuda: str | None = None  # CUDA version the driver supports, "12.2"
    tensorrt: str | None = None  # installed TensorRT version, "10.13.0.35"; None: not installed
    tensorrt_cuda: str | None = None  # CUDA major of the TensorRT wheels, "12"
    probed: tuple[str, ...] = ()  # what was looked at for the GPU, and what it said
    gpus: tuple[str, ...] = field(default=())  # every GPU nvidia-smi listed

    @property
    def has_gpu(self) -> bool:
        return self.gpu is not None

    @property
    def sm(self) -> str:
        """ "sm80" for compute capability 8.0, "smunknown" when unknown."""
        return "sm" + (self.compute_capability.replace(".", "") if self.compute_capability else "unknown")

    def identity(self) -> dict[str, str]:
        """What an engine built here depends on: the key's hardware half ("none" where unknown)."""
        return {
            "tensorrt": self.tensorrt or "none",
            "tensorrt_cuda": self.tensorrt_cuda or "none",
            "gpu": self.gpu or "none",
            "compute_capability": self.compute_capability or "none",
            "cuda": self.cuda or "none",
        }


def unmet_reason(probe: GpuProbe, cuda_python: bool = True) -> str | None:
    """Why a TensorRT build cannot run on the probed host, naming what was probed; None if it can."""
    reasons = []
    if not probe.has_gpu:
        reasons.append(f"needs an NVIDIA GPU (probed: {', '.join(probe.probed) or 'nothing'})")
    if probe.tensorrt is None:
        reasons.append(f"needs tensorrt: {INSTALL_HINT}")
    elif not cuda_python:
        reasons.append("needs cuda-python (cuda.bindings) to run engines: pip install '.[tensorrt]'")
    return "; ".join(reasons) or None


@functools.lru_cache(maxsize=1)
def probe_gpu() -> GpuProbe:
    """Probe this host once per process (see the module docstring for what is looked at)."""
    probed: list[str] = []
    nodes = sorted(glob.glob("/dev/nvidia[0-9]*"))
    probed.append(f"found {', '.join(nodes)}" if nodes else "no /dev/nvidia*")
    driver = _proc_driver_version()
    proc_models = _proc_gpu_models()
    if proc_models:
        probed.append(f"/proc/driver/nvidia/gpus: {', '.join(proc_models)}")
    elif os.path.isdir("/proc/driver/nvidia"):
        probed.append("/proc/driver/nvidia has no gpus")
    rows, smi_note = _nvidia_smi()
    probed.append(smi_note)
    cuda, cuda_note = _driver_cuda_version()
    if cuda_note:
        probed.append(cuda_note)
    gpu = cc = None
    if rows:
        gpu, cc, driver = rows[0][0], rows[0][1] or None, rows[0][2] or driver
    elif proc_models:
        gpu = proc_models[0]
    trt, trt_cuda = tensorrt_distribution()
    return GpuProbe(
        gpu=gpu,
        compute_capability=cc,
        driver=driver,
        cuda=cuda,
        tensorrt=trt,
        tensorrt_cuda=trt_cuda,
        probed=tuple(probed),
        gpus=tuple(r[0] for r in rows) or tuple(proc_models),
    )


def cuda_python_available() -> bool:
    """cuda-python's runtime bindings are importable (found without importing them)."""
    try:
        return (
            importlib.util.find_spec("cuda.bindings") is not None or importlib.util.find_spec("cuda.cudart") is not None
        )
    except (ImportError, ValueError):
        return False


def tensorrt_distribution() -> tuple[str | None, str | None]:
    """(TensorRT version, CUDA major of its wheels) from installed distributions, without importing tensorrt."""
    version = cuda = None
    for dist in TRT_DISTS:
        try:
            v = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        version = version or v
        m = re.search(r"cu(\d+)", dist)
        if m and cuda is None:
            cuda = m.group(1)
    if version is None:
        try:
            if importlib.util.find_spec("tensorrt") is not None:  # e.g. a system package without metadata
                version = "unknown"
        except (ImportError, ValueError):
            pass
    return version, cuda


def parse_smi_csv(text: str) -> list[tuple[str, str, str]]:
    """Rows of `name, compute_cap, driver_version` from nvidia-smi's CSV ("[N/A]" fields become "")."""
    rows = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[0]:
            continue
        rows.append(tuple("" if p.startswith("[") or p.upper() in ("N/A", "NA") else p for p in parts))
    return rows  # type: ignore[return-value]


def _nvidia_smi() -> tuple[list[tuple[str, str, str]], str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], "nvidia-smi not found"
    cmd = [smi, *SMI_QUERY]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if visible and visible not in ("-1", "none", "NoDevFiles"):
        cmd += ["-i", visible]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SMI_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return [], f"nvidia-smi timed out after {SMI_TIMEOUT_S:g} s"
    except OSError as exc:
        return [], f"nvidia-smi failed to start: {exc}"
    if done.returncode != 0:
        first = (done.stdout.strip() or done.stderr.strip() or f"exit code {done.returncode}").splitlines()[0]
        return [], f"nvidia-smi failed: {first}"
    rows = parse_smi_csv(done.stdout)
    if not rows:
        return [], "nvidia-smi listed no GPU"
    return rows, "nvidia-smi: " + "; ".join(f"{n} (sm {c or '?'}, driver {d or '?'})" for n, c, d in rows)


def _driver_cuda_version() -> tuple[str | None, str | None]:
    """The CUDA version the driver supports, from libcuda's cuDriverGetVersion (callable before cuInit)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None, "libcuda.so.1 not found"
    version = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
        return None, "libcuda.so.1: cuDriverGetVersion failed"
    return f"{version.value // 1000}.{(version.value % 1000) // 10}", None


def _proc_driver_version() -> str | None:
    try:
        with open("/proc/driver/nvidia/version") as f:
            m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", f.read())
    except OSError:
        return None
    return m.group(1) if m else None


def _proc_gpu_models() -> list[str]:
    models = []
    for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(info) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip() == "Model":
                        models.append(value.strip())
                        break
        except OSError:
            continue
    return models
