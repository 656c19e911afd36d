"""build.openvino's sparse-weight decompression option: compiled with it, recorded in engine.json, runners compile
with it too, the summary says when this CPU ignores it, and it is refused for a device other than the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from graphs import save
from harness import run_stage
from pydantic import ValidationError
from test_prune_sparsity import SPEC, net

from stages.build_openvino import BuildOpenvino, BuildOpenvinoParams, sparse_note
from stages.runtimes import engine_info
from stages.runtimes.onnx import sparsity
from stages.runtimes.onnx.io import random_inputs, run_onnx, session_from_onnx

ov = pytest.importorskip("openvino")
RATE = "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = net()
    sparsity.prune_sites(model, [s for s in sparsity.weight_sites(model) if s.reason is None])
    return save(model, tmp_path_factory.mktemp("pruned") / "model.onnx")


def build(outdir: Path, source: Path, **params) -> dict:
    return run_stage(BuildOpenvino, outdir, {"inference_precision": "f32", **params}, {"model": str(source)}, SPEC)


def test_rate_is_compiled_recorded_and_used_by_runners(pruned: Path, tmp_path: Path) -> None:
    from stages.runtimes.openvino.runner import OpenVinoRunner

    summary = build(tmp_path / "s", pruned, sparse_weights_decompression_rate=0.5)
    info = engine_info.read(tmp_path / "s" / "model")
    assert info.details["sparse_weights_decompression_rate"] == 0.5
    note = summary["sparse_weights"]
    assert note.startswith("rate 0.5") and "the IR is not INT8" in note and note.endswith("layers run a sparse kernel")
    runner = OpenVinoRunner(tmp_path / "s" / "model")
    assert runner._compile("LATENCY").get_property(RATE) == pytest.approx(0.5)
    assert runner._compile("THROUGHPUT").get_property(RATE) == pytest.approx(0.5)
    session = session_from_onnx(pruned)
    feeds = random_inputs(session, {"x": (2, 6, 4, 4)}, 3)
    np.testing.assert_allclose(runner.infer(feeds)["y"], run_onnx(session, feeds)["y"], rtol=1e-4, atol=1e-4)
    # without the option: nothing recorded (engine.json as before), OpenVINO's default (1: off) when compiled
    plain = build(tmp_path / "p", pruned)
    assert "sparse_weights" not in plain
    assert "sparse_weights_decompression_rate" not in engine_info.read(tmp_path / "p" / "model").details
    assert OpenVinoRunner(tmp_path / "p" / "model")._compile("LATENCY").get_property(RATE) == pytest.approx(1.0)
    # the IR is the same bytes: the rate is a compile property, not part of the model
    sparse_dir, plain_dir = tmp_path / "s" / "model", tmp_path / "p" / "model"
    assert (sparse_dir / "model.bin").read_bytes() == (plain_dir / "model.bin").read_bytes()
    details = json.loads((sparse_dir / "engine.json").read_text())["details"]
    assert details["sparse_weights_decompression_rate"] == pytest.approx(0.5)


def test_summary_says_when_the_cpu_ignores_it(pruned: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stages.runtimes.cpu as cpu

    model = ov.Core().read_model(str(pruned))
    monkeypatch.setattr(cpu, "cpu_identity", lambda: {"cpu_flags": "avx2 avx512f"})
    assert sparse_note(None, model, 0.5) == (
        "rate 0.5 recorded but ignored here: this CPU has no AMX (OpenVINO decompresses sparse weights with AMX int8 "
        "kernels only); the IR is not INT8 (it applies to INT8 FullyConnected layers)"
    )
    monkeypatch.setattr(cpu, "cpu_identity", lambda: {"cpu_flags": "avx512f amx_tile amx_int8"})
    assert "this CPU has no AMX" not in sparse_note(None, model, 0.5)


def test_rate_is_validated() -> None:
    with pytest.raises(ValidationError, match="sparse_weights_decompression_rate is a CPU plugin property; device is"):
        BuildOpenvinoParams.model_validate(
            {"inference_precision": "f32", "device": "GPU", "sparse_weights_decompression_rate": 0.5}
        )
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValidationError):
            BuildOpenvinoParams.model_validate({"inference_precision": "f32", "sparse_weights_decompression_rate": bad})
    p = BuildOpenvinoParams.model_validate({"inference_precision": "f32", "sparse_weights_decompression_rate": 0})
    assert p.sparse_weights_decompression_rate == 0.0


def test_the_rate_reaches_benchmark_app_and_the_servers(pruned: Path, tmp_path: Path) -> None:
    """What validate measured is what ships: OVMS's plugin_config carries the rate, benchmark_app's line loads it,
    and a Triton repository (whose OpenVINO backend has no such parameter) says it runs without it."""
    from stages.packaging.members import member_from
    from stages.packaging.ovms.config import derived_plugin_config
    from stages.packaging.triton.plan import _openvino_parameters

    build(tmp_path / "s", pruned, sparse_weights_decompression_rate=0.5)
    info = engine_info.read(tmp_path / "s" / "model")
    assert info.details["benchmark_app"][-2:] == ["-load_config", "benchmark_app_config.json"]
    assert info.details["benchmark_app_config"] == {"CPU": {RATE: "0.5"}}
    member = member_from("engine", tmp_path / "s" / "model")
    assert derived_plugin_config(member)[RATE] == "0.5"
    warnings: list[str] = []
    _openvino_parameters(member, warnings)
    assert any("sparse-weight decompression rate" in w for w in warnings)
    build(tmp_path / "p", pruned)
    plain = member_from("engine", tmp_path / "p" / "model")
    assert RATE not in derived_plugin_config(plain)
    assert "-load_config" not in engine_info.read(tmp_path / "p" / "model").details["benchmark_app"]
