"""The repositories and fixtures, loaded by a real Triton server: the tritonserver that nvidia-pytriton bundles
(`make install` unpacks it into .venv/tritonserver; its wheel carries only the python backend). Triton's core
reads and validates every config of a repository before it looks for a model's backend, so on this machine a
config the core accepts fails only with "unable to find backend library": what the core says of each fixture
is checked here against what `package.triton`'s checks say (they reject every fixture, and accept what the
server's core accepts).

Skipped, with the reason, where no server was unpacked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from graphs import CONV_SPEC, conv_bn, save
from harness import run_stage
from triton_fixture import CLASSES, FIXTURES, materialize
from trt_records import trt_engine

from stages.build_openvino import BuildOpenvino
from stages.package_triton import PackageTriton

SERVER = Path(sys.prefix) / "tritonserver" / "pytriton" / "tritonserver"
DOCS = FIXTURES / "docs"

pytestmark = pytest.mark.skipif(
    not (SERVER / "bin" / "tritonserver").is_file(),
    reason=f"no Triton server at {SERVER} (make install unpacks the one nvidia-pytriton bundles)",
)

# Errors that mean the core accepted the config and the server went on to load the model: no backend library
# for it here (onnxruntime, openvino, tensorrt), the python backend's stub not set up, or an ensemble whose steps
# did not load for those reasons.
BACKEND = re.compile(
    r"unable to find backend library|triton_python_backend_stub is not found|which has no loaded version"
)
NOISE = re.compile(r"pinned memory|CudaDriverHelper|CUDA memory pool|failed to load all models")

# What the real core says of each fixture class (every one of which package.triton's checks reject):
# - it only warns, skips the folder and serves the others:
WARNED = {"version_leading_zero", "version_not_integer"}
# - it accepts the config; the problem shows when the backend loads the model, or never (served silently):
LOADS = {
    "cc_file_missing",  # the TensorRT backend fails then, on a GPU of that compute capability only
    "cc_key_gpu_name",  # a GPU name as key never matches: the default plan is served on every GPU (server#4657)
    "cc_key_missing",
    "cc_key_wrong_capability",
    "cc_same_capability",  # two plans for sm 7.5: one is served on both GPUs
    "default_file_missing",
    "dtype_unmapped",
    "ensemble_batch_over_step",  # checked once the steps have loaded
    "ensemble_step_data_type",
    "instance_count_negative",  # silently replaced by the default count
    "kind_cpu_tensorrt",
    "kind_cpu_with_gpus",
    "kind_gpu_cpu_engine",
    "kind_gpu_openvino",
    "kind_model_with_gpus",
    "onnx_batch_dim_static",  # "first dimension must be -1", from the onnxruntime backend
    "onnx_data_type",
    "onnx_input_name",
    "onnx_rank",
    "onnx_unreadable",
    "openvino_bin_missing",
    "openvino_data_type",
    "openvino_range_dims",
    "openvino_static_batch",
    "openvino_unbatched_wildcard",
    "profile_not_an_index",
    "profile_not_tensorrt",
    "tensorrt_max_batch",  # "engine only supports max-batch M", from the TensorRT backend
    "version_trailing_letters",  # '2a' is served as version 2
    "version_zero",  # version 0 is never served; the others are
}


def serve(repository: Path) -> str:
    """Start the server on `repository` with no endpoints, auto-complete off, exiting once every model is loaded or
    has failed; its log."""
    proc = subprocess.run(
        [
            str(SERVER / "bin" / "tritonserver"),
            f"--model-repository={repository}",
            "--disable-auto-complete-config",
            f"--backend-directory={SERVER / 'backends'}",
            f"--cache-directory={SERVER / 'caches'}",
            "--allow-http=false",
            "--allow-grpc=false",
            "--allow-metrics=false",
            "--exit-on-error=true",
            "--exit-timeout-secs=5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout + proc.stderr


def verdict(log: str) -> tuple[str, list[str]]:
    """'rejected' (the core logged an error other than a missing backend), 'warned', or 'loads'; and those lines."""
    lines = [line for line in log.splitlines() if re.match(r"^[EW]\d{4} ", line) and not NOISE.search(line)]
    errors = [line for line in lines if line.startswith("E") and not BACKEND.search(line)]
    warnings = [line for line in lines if line.startswith("W")]
    if errors:
        return "rejected", errors
    return ("warned", warnings) if warnings else ("loads", lines)


def copy(tmp_path: Path, name: str) -> Path:
    return materialize(name, tmp_path / name)


@pytest.mark.parametrize("name", CLASSES)
def test_what_the_core_of_a_real_triton_says_of_each_fixture(name: str, tmp_path: Path) -> None:
    said, lines = verdict(serve(copy(tmp_path, name)))
    expected = "warned" if name in WARNED else "loads" if name in LOADS else "rejected"
    assert said == expected, "\n".join(lines)


@pytest.mark.parametrize("name", sorted(p.name for p in DOCS.glob("*.pbtxt")))
def test_the_documented_configs_pass_the_core_of_a_real_triton(name: str, tmp_path: Path) -> None:
    """Each example (a fragment added to the minimal config, as the checks take it) served as a model of the folder
    its `name` gives, versions 1-3; the two reshape fragments leave out data_type, which the core refuses as the
    checks do (test_triton_checks.py)."""
    text = (DOCS / name).read_text()
    if ".fragment." in name:
        text = (DOCS / "minimal.pbtxt").read_text() + text
    named = re.search(r'^\s*name:\s*"([^"]+)"', text, re.M)
    folder = tmp_path / "repository" / (named.group(1) if named else "doc")
    for version in (1, 2, 3):
        (folder / str(version)).mkdir(parents=True)
        (folder / str(version) / "model.plan").write_bytes(b"a plan is never read here")
    (folder / "config.pbtxt").write_text(text)
    said, lines = verdict(serve(tmp_path / "repository"))
    if name.startswith("reshape_"):
        assert said == "rejected" and "must specify 'data_type'" in lines[0]
    else:
        assert said == "loads", "\n".join(lines)


def test_a_repository_package_triton_writes_passes_the_core_of_a_real_triton(tmp_path: Path) -> None:
    """OpenVINO, ONNX Runtime and a TensorRT group for four GPUs (fabricated engine.json records and plans that are
    never run): every model reaches its backend, which is all this server lacks."""
    onnx_file = save(conv_bn(), tmp_path / "onnx" / "model.onnx")
    run_stage(BuildOpenvino, tmp_path / "ov", {"inference_precision": "f32"}, {"model": onnx_file}, CONV_SPEC)
    members = {"engine@openvino-fp32": tmp_path / "ov" / "model", "simplify": onnx_file}
    members |= {f"trt@fp16-{gpu}": trt_engine(tmp_path / "trt", gpu) for gpu in ("T4", "L4", "A100", "H100")}
    inputs = {f"models[{label}]": path for label, path in members.items()}
    run_stage(PackageTriton, tmp_path / "pkg", {"dynamic_batching": True, "instance_count": 2}, inputs=inputs)
    log = serve(tmp_path / "pkg" / "repository")
    said, lines = verdict(log)
    assert said == "loads", "\n".join(lines)
    for model in ("engine_openvino_fp32", "simplify", "trt_fp16"):
        assert f"failed to load '{model}' version 1: Invalid argument: unable to find backend library" in log
