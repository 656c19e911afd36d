"""build.tensorrt outputs fabricated for packaging tests: an engine.json record and a plan file that is never run
(no GPU here: TensorRT packaging rules are tested on records, never on fake engines run as real ones)."""

from __future__ import annotations

from pathlib import Path

from stages.runtimes import engine_info
from stages.runtimes.engine_info import EngineInfo
from stages.runtimes.tensorrt.targets import COMPUTE_CAPABILITY


def trt_engine(root: Path, gpu: str, precision: str = "fp16", plan: bytes | None = None, **settings: str) -> Path:
    """A build.tensorrt output directory for `gpu`: model.engine (never run) and its engine.json."""
    out = root / f"{gpu}-{precision}"
    out.mkdir(parents=True)
    (out / "model.engine").write_bytes(plan if plan is not None else f"plan {gpu} {precision}".encode())
    info = {
        "backend": "tensorrt",
        "precision": precision,
        "toolchain": {"tensorrt": "10.13.0"},
        "device": {
            "device": f"NVIDIA {gpu}",
            "compute_capability": COMPUTE_CAPABILITY.get(gpu, "7.5"),
            "accelerator": gpu,
        },
        "inputs": [
            {
                "name": "input",
                "dtype": "float32",
                "dims": ["1..8", 3, 8, 8],
                "min": [1, 3, 8, 8],
                "opt": [4, 3, 8, 8],
                "max": [8, 3, 8, 8],
            }
        ],
        "outputs": [{"name": "out", "dtype": "float32", "dims": ["?", 4, 8, 8]}],
        "reproduce": ["trtexec", "--onnx=model.onnx"],
        "details": {"settings": settings},
    }
    engine_info.write(EngineInfo.model_validate(info), out)
    return out
