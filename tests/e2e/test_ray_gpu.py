"""TensorRT engines built through `--executor ray` on the GPU they are for (marked gpu: skipped on a machine
without an NVIDIA GPU and TensorRT, with what was probed).

The session's cluster (raycluster.py) gets one more node: this machine's GPU, labelled as Ray labels it.
ResNet50's FP16 branch is built for a target declared from what this machine has; the engine must come
from that node (the labelled CPU-only nodes of the session cluster offer no GPU, so a task that asks for
one can only land there), its engine.json must name the target, and its validation runs on a node of the
same target. A target of another GPU the cluster does not have is unavailable, naming what it has.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from harness import RECIPES, Project, rows
from raycluster import RayCluster
from s3server import Bucket
from test_ray import cli, env

from stages.runtimes.tensorrt.probe import cuda_python_available, probe_gpu, unmet_reason
from stages.runtimes.tensorrt.targets import COMPUTE_CAPABILITY, accelerator_type

PROBE = probe_gpu()
UNMET = unmet_reason(PROBE, cuda_python_available())
LABEL = accelerator_type(PROBE.gpu)
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        UNMET is not None or LABEL not in COMPUTE_CAPABILITY,
        reason=f"needs an NVIDIA GPU the target table knows and tensorrt: probed {', '.join(PROBE.probed)}; "
        f"tensorrt {PROBE.tensorrt or 'not installed'}",
    ),
]
BRANCH = ["tensorrt_fp16", "check_trt_fp16"]


def here_target() -> str:
    """This machine as a declared target, in --set syntax."""
    assert PROBE.tensorrt is not None and PROBE.cuda is not None
    release = ".".join(PROBE.tensorrt.split(".")[:2])
    cuda = f"{PROBE.tensorrt_cuda or PROBE.cuda.split('.')[0]}.0"
    return f'{{gpu: {LABEL}, tensorrt: "{release}", cuda: "{cuda}"}}'


@pytest.fixture
def gpu_node(ray_cluster: RayCluster):
    node = ray_cluster.add(str(LABEL), cpus=2, gpus=1)
    ray_cluster.cluster.wait_for_nodes()
    yield node
    ray_cluster.cluster.remove_node(node)


def run_for(target: str, cluster: RayCluster, bucket: Bucket, tmp_path: Path, *stages: str):
    """resnet50_int8's TensorRT FP16 branch through the cluster, built for `target`: (process, rows)."""
    path = Project.copy(tmp_path, "resnet50_int8.yaml", source=RECIPES).root / "resnet50_int8.yaml"
    proc = subprocess.run(
        [*cli(path, cluster, bucket, *stages), "--set", f"stages.tensorrt_fp16.with.target={target}"],
        cwd=path.parent, env=env(path, bucket), capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    return proc, (rows(json.loads(proc.stdout)) if proc.stdout.strip() else {})


@pytest.mark.slow
def test_a_tensorrt_engine_is_built_and_validated_on_the_gpu_it_is_for(
    ray_cluster: RayCluster,
    gpu_node,
    bucket: Bucket,
    tmp_path: Path,
) -> None:
    proc, r = run_for(here_target(), ray_cluster, bucket, tmp_path, *BRANCH)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert r["tensorrt_fp16"]["status"] == "ran" and r["check_trt_fp16"]["status"] == "ran"
    assert r["tensorrt_fp16"]["node"] == gpu_node.node_id[:12] == r["check_trt_fp16"]["node"]
    info = json.loads((Path(r["tensorrt_fp16"]["outputs"]["model"]) / "engine.json").read_text())
    assert info["target"]["accelerator"] == LABEL
    assert info["target"]["compute_capability"] == COMPUTE_CAPABILITY[str(LABEL)]


def test_a_target_no_node_has_is_unavailable_naming_the_clusters_gpus(
    ray_cluster: RayCluster,
    gpu_node,
    bucket: Bucket,
    tmp_path: Path,
) -> None:
    other = next(gpu for gpu in sorted(COMPUTE_CAPABILITY) if gpu not in (LABEL, "H100", "L4") and "-" not in gpu)
    target = here_target().replace(f"gpu: {LABEL}", f"gpu: {other}")
    proc, r = run_for(target, ray_cluster, bucket, tmp_path, "tensorrt_fp16")
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert r["tensorrt_fp16"]["status"] == "unavailable"
    assert f"no node of the Ray cluster offers {other}" in proc.stderr and str(LABEL) in proc.stderr
