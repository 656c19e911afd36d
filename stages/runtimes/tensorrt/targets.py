"""Hardware targets: what a hardware-bound stage's result depends on, declared in the recipe.

`with: {target: {gpu: H100, tensorrt: "11.4", cuda: "12.9"}}` on a `build.tensorrt`
stage says the engine is for that GPU model, TensorRT release and CUDA version.
The key holds the declared target, so a machine without a GPU computes it (and
can be served the engine from a cache) without contacting anything; the node that
builds it probes its own GPU and refuses a target it does not match, so an
engine is never built on one GPU and served for another.

GPU names are the accelerator types Ray gives its nodes (`ray.io/accelerator-type`,
`ray.util.accelerators`), derived from nvidia-smi's name by the same rule Ray uses,
so a recipe, a cluster's labels and a probed node speak one language. The table
maps each name to its compute capability (NVIDIA's CUDA GPUs list).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from stages.runtimes.tensorrt.probe import GpuProbe

# Ray accelerator type -> compute capability. A100-40G / A100-80G are the labels Ray documents for
# pinning a memory size (a node reports plain "A100" unless labelled so).
COMPUTE_CAPABILITY: dict[str, str] = {
    "K80": "3.7",
    "P100": "6.0",
    "P4": "6.1",
    "V100": "7.0",
    "T4": "7.5",
    "A100": "8.0",
    "A100-40G": "8.0",
    "A100-80G": "8.0",
    "A30": "8.0",
    "A10G": "8.6",
    "A10": "8.6",
    "A40": "8.6",
    "L4": "8.9",
    "L40": "8.9",
    "L40S": "8.9",
    "H100": "9.0",
    "H200": "9.0",
    "H20": "9.0",
    "GH200": "9.0",
    "B200": "10.0",
    "GB200": "10.0",
    "B300": "10.3",
    "GB300": "10.3",
    "RTX-PRO-6000": "12.0",
}
# Labels that name a memory size of a model a node reports without it.
SIZED = {"A100-40G": "A100", "A100-80G": "A100"}

# Ray's rule (ray/_private/accelerators/nvidia_gpu.py): the first all-caps/digit model token after the vendor.
_RAY_NAME = re.compile(r"\w+\s+((?:[A-Z]+\s+)*[A-Z0-9]*\d[A-Z0-9]*)")


def accelerator_type(gpu_name: str | None) -> str | None:
    """nvidia-smi's name as Ray labels the node: "NVIDIA H100 80GB HBM3" -> "H100", "Tesla T4" -> "T4"."""
    if not gpu_name:
        return None
    match = _RAY_NAME.match(gpu_name)
    result = match.group(1).replace(" ", "-") if match else None
    if result and len(result) > 1:
        return result
    cleaned = re.sub(r"^NVIDIA\s+", "", gpu_name).strip()
    return cleaned.replace(" ", "-") or None


class Target(BaseModel):
    """The GPU, TensorRT and CUDA an engine is built for (and keyed by)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str = Field(description="accelerator type as Ray names it: H100, A100, A100-80G, L4, T4, ...")
    tensorrt: str = Field(description='TensorRT release, "11.4" (a node\'s 11.4.x matches)')
    cuda: str = Field(
        description='CUDA version, "12.9": the node\'s TensorRT wheels are for CUDA 12, its driver >= 12.9'
    )

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
        if v not in COMPUTE_CAPABILITY:
            known = ", ".join(sorted(COMPUTE_CAPABILITY))
            raise ValueError(f"unknown GPU {v!r}; known (Ray's accelerator types): {known}")
        return v

    @field_validator("tensorrt", "cuda")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)*", v):
            raise ValueError(f'{v!r} is not a version like 11.4 (quote it in YAML: "11.4")')
        return v

    @property
    def compute_capability(self) -> str:
        return COMPUTE_CAPABILITY[self.gpu]

    @property
    def accelerator(self) -> str:
        """The node label a scheduler matches (a sized A100 label also matches a node labelled so)."""
        return self.gpu

    def identity(self) -> dict[str, str]:
        """The key's hardware half for a declared target (what a probed host gives without one)."""
        return {
            "target_gpu": self.gpu,
            "compute_capability": self.compute_capability,
            "tensorrt": self.tensorrt,
            "cuda": self.cuda,
        }

    def describe(self) -> str:
        return f"{self.gpu} (sm {self.compute_capability}), TensorRT {self.tensorrt}, CUDA {self.cuda}"

    def mismatch(self, probe: GpuProbe | None = None, doing: str = "run stages for") -> str | None:
        """Why the probed node (this machine's when `probe` is None) is not of this target, in one line naming
        both, or None when it is (the engine's `HardwareTarget.mismatch`)."""
        if probe is None:
            from stages.runtimes.tensorrt.probe import probe_gpu

            probe = probe_gpu()
        problems = []
        node = accelerator_type(probe.gpu)
        if node is None:
            problems.append("it has no NVIDIA GPU")
        elif node != SIZED.get(self.gpu, self.gpu) and node != self.gpu:
            problems.append(f"its GPU is {probe.gpu} ({node})")
        elif probe.compute_capability and probe.compute_capability != self.compute_capability:
            problems.append(f"its GPU is sm {probe.compute_capability}, not {self.compute_capability}")
        if probe.tensorrt is None:
            problems.append("it has no TensorRT")
        elif not _same_release(probe.tensorrt, self.tensorrt):
            problems.append(f"its TensorRT is {probe.tensorrt}")
        major = self.cuda.split(".")[0]
        if probe.tensorrt_cuda and probe.tensorrt_cuda != major:
            problems.append(f"its TensorRT is built for CUDA {probe.tensorrt_cuda}")
        if probe.cuda and _version(probe.cuda) < _version(self.cuda):
            problems.append(f"its driver supports CUDA {probe.cuda}")
        if not problems:
            return None
        return f"this node cannot {doing} {self.describe()}: " + "; ".join(problems)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _same_release(installed: str, declared: str) -> bool:
    """ "11.4.0.12" is release "11.4"; "11" matches any 11.x."""
    want = _version(declared)
    return _version(installed)[: len(want)] == want
