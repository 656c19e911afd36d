"""build.tensorrt's sparse_weights as plain data (no tensorrt, no GPU): the plan counts the ONNX's 2:4 weights with
the verifier and warns, in one line, when none is, so a user sees the flag can do nothing."""

from __future__ import annotations

import json
from pathlib import Path

from graphs import save
from test_prune_sparsity import net

from pipeline.schema import ModelSpec
from stages.build_tensorrt import BuildTensorrtParams
from stages.runtimes.onnx import sparsity
from stages.runtimes.tensorrt.plan import build_plan
from stages.runtimes.tensorrt.probe import GpuProbe

SPEC = ModelSpec.model_validate(
    {"tensors": {"x": {"shape": ["batch", 6, 4, 4]}}, "dims": {"batch": {"min": 1, "opt": 2, "max": 4}}}
)
A100 = GpuProbe(gpu="NVIDIA A100-SXM4-80GB", compute_capability="8.0", cuda="12.4", tensorrt="10.13.0.35")


def plan(onnx: Path, **params):  # type: ignore[no-untyped-def]
    return build_plan(BuildTensorrtParams.model_validate(params), SPEC, A100, onnx, None)


def test_sparse_weights_on_a_dense_onnx_warns_in_one_line(tmp_path: Path) -> None:
    dense = save(net(), tmp_path / "dense.onnx")
    p = plan(dense, sparse_weights=True)
    assert p.sparse_2_4 == (0, 6) and "SPARSE_WEIGHTS" in p.builder_flags
    (warning,) = p.warnings
    assert warning == (
        "sparse_weights is on, but none of the 6 MatMul/Gemm/Conv weights in dense.onnx is 2:4 sparse along its "
        "input dim, so TensorRT has nothing to run sparse (prune the model with prune.sparsity first)"
    )
    assert "\n" not in warning
    settings = json.loads(json.dumps(p.as_dict()))  # plain data, as engine.json's settings record it
    assert settings["sparse_2_4"] == [0, 6] and settings["warnings"] == [warning]


def test_sparse_weights_on_a_pruned_onnx_counts_them(tmp_path: Path) -> None:
    model = net()
    sparsity.prune_sites(model, [s for s in sparsity.weight_sites(model) if s.node in ("conv", "mm")])
    pruned = save(model, tmp_path / "pruned.onnx")
    p = plan(pruned, sparse_weights=True)
    assert p.sparse_2_4 == (2, 6) and p.warnings == ()
    assert "--sparsity=enable" in p.trtexec


def test_flag_off_or_no_file_reads_nothing(tmp_path: Path) -> None:
    dense = save(net(), tmp_path / "dense.onnx")
    off = plan(dense)
    assert off.sparse_2_4 is None and off.warnings == () and "SPARSE_WEIGHTS" not in off.builder_flags
    shown = plan(tmp_path / "absent.onnx", sparse_weights=True)  # a plan made for show, no file behind it
    assert shown.sparse_2_4 is None and shown.warnings == ()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    (warning,) = plan(broken, sparse_weights=True).warnings
    assert warning.startswith("sparse_weights: cannot count the 2:4 weights of broken.onnx: ") and "\n" not in warning
