"""Hardware targets declared in a recipe: names as Ray gives them, keys that do not name the machine that
computes them, and nodes that refuse a target they do not match. Pure data: no GPU, no TensorRT."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from pipeline.backends.worker import unmet_here
from pipeline.cache.hashing import DigestMemo
from pipeline.keys.compute import KeyContextImpl, compute_key, toolchain_of
from stages.build_tensorrt import BuildTensorrt, BuildTensorrtParams
from stages.runtimes.tensorrt.probe import GpuProbe
from stages.runtimes.tensorrt.targets import COMPUTE_CAPABILITY, Target, accelerator_type

H100_NODE = GpuProbe(
    gpu="NVIDIA H100 80GB HBM3",
    compute_capability="9.0",
    driver="575.51.03",
    cuda="12.9",
    tensorrt="11.4.0.10",
    tensorrt_cuda="12",
    probed=("found /dev/nvidia0",),
)
NO_GPU = GpuProbe(probed=("no /dev/nvidia*", "nvidia-smi not found"))
H100 = {"gpu": "H100", "tensorrt": "11.4", "cuda": "12.9"}


@pytest.mark.parametrize(
    ("name", "ray"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("Tesla T4", "T4"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX-PRO-6000"),
        ("NVIDIA GeForce RTX 5090", "GeForce-RTX-5090"),
    ],
)
def test_gpu_names_become_ray_accelerator_types(name: str, ray: str) -> None:
    assert accelerator_type(name) == ray


def test_every_label_ray_defines_for_nvidia_has_a_compute_capability() -> None:
    ray_nvidia = {"V100", "P100", "T4", "P4", "K80", "A10G", "L4", "L40S", "A100", "H100", "H200", "H20", "B200"}
    ray_nvidia |= {"B300", "GB200", "GB300", "RTX-PRO-6000", "A100-40G", "A100-80G"}
    assert ray_nvidia <= set(COMPUTE_CAPABILITY)


def test_a_target_is_validated_with_a_message_naming_the_known_gpus() -> None:
    assert Target.model_validate(H100).compute_capability == "9.0"
    with pytest.raises(ValidationError, match="unknown GPU 'H1000'.*H100"):
        Target.model_validate({**H100, "gpu": "H1000"})
    with pytest.raises(ValidationError, match="not a version like 11.4"):
        Target.model_validate({**H100, "tensorrt": "eleven"})
    with pytest.raises(ValidationError, match="extra"):
        Target.model_validate({**H100, "driver": "575"})


def test_a_matching_node_may_build_and_others_are_told_why_not() -> None:
    target = Target.model_validate(H100)
    assert target.mismatch(H100_NODE) is None
    assert target.mismatch(dataclasses.replace(H100_NODE, tensorrt="11.4.1.2")) is None  # same release
    a100 = dataclasses.replace(H100_NODE, gpu="NVIDIA A100-SXM4-80GB", compute_capability="8.0")
    assert target.mismatch(a100, doing="build for") == (
        "this node cannot build for H100 (sm 9.0), TensorRT 11.4, CUDA 12.9: its GPU is NVIDIA A100-SXM4-80GB (A100)"
    )
    old = dataclasses.replace(H100_NODE, tensorrt="10.13.0.35", tensorrt_cuda="13", cuda="12.4")
    why = target.mismatch(old)
    assert why is not None
    assert "its TensorRT is 10.13.0.35" in why and "built for CUDA 13" in why and "supports CUDA 12.4" in why
    assert "it has no NVIDIA GPU; it has no TensorRT" in (target.mismatch(NO_GPU) or "")
    sized = Target.model_validate({**H100, "gpu": "A100-80G"})
    assert sized.mismatch(dataclasses.replace(H100_NODE, gpu="NVIDIA A100-SXM4-80GB", compute_capability="8.0")) is None


def _key(tmp_path: Path, params: BuildTensorrtParams) -> tuple[str, dict]:
    node = SimpleNamespace(kind=BuildTensorrt, params=params)
    recipe = SimpleNamespace(model=None)
    result = compute_key(
        node, recipe, {"model": "0" * 64}, {}, BuildTensorrt(), KeyContextImpl(DigestMemo(None), tmp_path)
    )
    return result.key, result.components


def test_a_declared_target_keys_the_same_on_a_cpu_runner_and_on_the_gpu_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p = BuildTensorrtParams.model_validate({"target": H100})
    monkeypatch.setattr("stages.runtimes.tensorrt.probe.probe_gpu", lambda: NO_GPU)
    on_cpu, components = _key(tmp_path, p)
    assert components["toolchain"] == {
        "target_gpu": "H100",
        "compute_capability": "9.0",
        "tensorrt": "11.4",
        "cuda": "12.9",
    }
    assert BuildTensorrt().target(p).accelerator == "H100" and unmet_here(BuildTensorrt(), p) is not None
    monkeypatch.setattr("stages.runtimes.tensorrt.probe.probe_gpu", lambda: H100_NODE)
    monkeypatch.setattr("stages.runtimes.tensorrt.probe.cuda_python_available", lambda: True)
    on_gpu, _ = _key(tmp_path, p)
    assert on_cpu == on_gpu
    assert unmet_here(BuildTensorrt(), p) is None
    other = BuildTensorrtParams.model_validate({"target": {**H100, "gpu": "L4"}})
    assert _key(tmp_path, other)[0] != on_gpu
    assert unmet_here(BuildTensorrt(), other) == (
        "this node cannot run stages for L4 (sm 8.9), TensorRT 11.4, CUDA 12.9: its GPU is NVIDIA H100 80GB HBM3 (H100)"
    )
    # Without a target the key is the probed host's, as before.
    plain = BuildTensorrtParams.model_validate({})
    assert BuildTensorrt().target(plain) is None
    assert _key(tmp_path, plain)[1]["toolchain"]["gpu"] == "NVIDIA H100 80GB HBM3"


def test_the_stage_refuses_to_build_for_another_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pipeline.stage import StageContext

    monkeypatch.setattr(
        "stages.runtimes.tensorrt.probe.probe_gpu", lambda: dataclasses.replace(H100_NODE, gpu="NVIDIA L4")
    )
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not used")
    ctx = StageContext(
        stage="trt",
        params=BuildTensorrtParams.model_validate({"target": H100}),
        inputs={"model": onnx},
        outdir=tmp_path / "out",
        recipe_dir=tmp_path,
        outputs=dict(BuildTensorrt.outputs),
    )
    with pytest.raises(RuntimeError, match=r"cannot build for H100 .*its GPU is NVIDIA L4 \(L4\)"):
        BuildTensorrt().run(ctx)
    assert not (tmp_path / "out").exists()


RECIPE = """
name: t
model:
  tensors: {input: {shape: [1, 3], dtype: float32}}
data:
  val: {kind: synthetic, count: 4}
stages:
  build_h100:
    uses: build.tensorrt
    inputs: {model: m.onnx}
    with: {target: {gpu: H100, tensorrt: "11.4", cuda: "12.9"}}
  build_l4:
    uses: build.tensorrt
    inputs: {model: m.onnx}
    with: {target: {gpu: L4, tensorrt: "11.4", cuda: "12.9"}}
  check_h100:
    uses: validate
    inputs: {candidate: build_h100, reference: m.onnx, data: data.val}
  check_own:
    uses: validate
    inputs: {candidate: build_h100, reference: m.onnx, data: data.val}
    with: {target: {gpu: L4, tensorrt: "11.4", cuda: "12.9"}}
  check_onnx:
    uses: validate
    inputs: {candidate: m.onnx, reference: m.onnx, data: data.val}
"""


def test_a_check_of_a_targeted_engine_takes_its_target_and_keys_by_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pipeline.errors import RecipeError
    from pipeline.recipe.load import load_recipe
    from stages.validate import Validate

    (tmp_path / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "t.yaml").write_text(RECIPE)
    stages = load_recipe(tmp_path / "t.yaml").stages
    check = stages["check_h100"].params
    assert check.target == stages["build_h100"].params.target  # type: ignore[attr-defined]
    assert Validate().target(check).accelerator == "H100"  # type: ignore[union-attr]
    assert Validate().target(stages["check_own"].params).accelerator == "L4"  # type: ignore[union-attr]
    assert Validate().target(stages["check_onnx"].params) is None  # an ONNX check is this machine's
    toolchain = toolchain_of(Validate(), check)
    assert toolchain["target_gpu"] == "H100" and "cpu" not in toolchain and "gpu" not in toolchain
    assert "cpu" in toolchain_of(Validate(), stages["check_onnx"].params)
    monkeypatch.setattr("stages.runtimes.tensorrt.probe.probe_gpu", lambda: NO_GPU)
    assert "this node cannot run stages for H100" in (unmet_here(Validate(), check) or "")
    monkeypatch.setattr("stages.runtimes.tensorrt.probe.probe_gpu", lambda: H100_NODE)
    assert unmet_here(Validate(), check) is None
    # A check that reads engines for two targets must say which it is for.
    (tmp_path / "t.yaml").write_text(
        RECIPE.replace("candidate: m.onnx, reference: m.onnx", "candidate: build_l4, reference: build_h100")
    )
    with pytest.raises(RecipeError, match="check_onnx.*reads results for H100, L4: set its target"):
        load_recipe(tmp_path / "t.yaml")
