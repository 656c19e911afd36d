"""report.compare on hand-made validate reports: ratios, flags, the optional speed-up gate, and what each side is
(backend, precision, toolchain) read from the EngineInfo the reports embed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import run_stage

from pipeline.errors import GateFailed
from stages.compare_reports import CompareReports
from stages.runtimes.engine_info import EngineDevice, EngineInfo, TensorInfo


def report(path: Path, stage: str, fps: dict[int, float], p50: float, size: float, cos: float) -> Path:
    timing = [{"mode": "latency", "batch": 1, "p50_ms": p50, "throughput": 1000 / p50}]
    timing += [{"mode": "throughput", "batch": b, "p50_ms": 1.0, "throughput": v} for b, v in fps.items()]
    path.write_text(
        json.dumps(
            {
                "stage": stage,
                "gates_passed": 2,
                "gates_total": 2,
                "timing": {"candidate": timing, "reference": []},
                "candidate": {"precision": stage, "size_mb": size},
                "outputs": {"logits": {"figures": {"centered_cosine": cos, "max_abs": 0.5}}},
            }
        )
    )
    return path


def test_ratios_and_side_by_side_markdown(tmp_path: Path) -> None:
    a = report(tmp_path / "a.json", "int8", {1: 150.0, 8: 200.0}, 5.0, 25.0, 0.97)
    b = report(tmp_path / "b.json", "fp16", {1: 100.0, 8: 100.0, 32: 90.0}, 10.0, 50.0, 0.999)
    summary = run_stage(CompareReports, tmp_path / "out", inputs={"candidate": a, "baseline": b})
    assert summary == {"speedup_b1": 1.5, "speedup_b8": 2.0, "flags": 0}
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["size_ratio"] == 0.5 and result["flags"] == []
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| throughput, batch 8 (samples/s) | 200 | 100 | 2.00x |" in md
    assert "| latency p50, batch 1 (ms) | 5 | 10 | 0.5 |" in md
    assert "| centered_cosine (logits) | 0.97 | 0.999 |  |" in md


def test_an_int8_engine_that_is_not_faster_is_flagged_and_can_fail(tmp_path: Path) -> None:
    a = report(tmp_path / "a.json", "int8", {1: 99.0, 8: 130.0}, 5.0, 25.0, 0.97)
    b = report(tmp_path / "b.json", "fp16", {1: 100.0, 8: 100.0}, 10.0, 50.0, 0.999)
    summary = run_stage(CompareReports, tmp_path / "warn", inputs={"candidate": a, "baseline": b})
    assert summary["flags"] == 1
    assert "int8 is not faster than fp16 at batch 1: 0.99x" in (tmp_path / "warn" / "compare.md").read_text()
    with pytest.raises(GateFailed, match=r"throughput at batch 1: 0.99x < 1.00x"):
        run_stage(CompareReports, tmp_path / "gate", {"min_speedup": 1.0}, inputs={"candidate": a, "baseline": b})
    assert (tmp_path / "gate" / "compare.md").exists()  # written before the gate fails
    close = report(tmp_path / "close.json", "int8", {1: 99.8}, 5.0, 25.0, 0.97)  # 0.998x: not "1.00x < 1.00x"
    with pytest.raises(GateFailed, match=r"throughput at batch 1: 0\.998x < 1\.000x"):
        run_stage(CompareReports, tmp_path / "close", {"min_speedup": 1.0}, inputs={"candidate": close, "baseline": b})


def test_not_a_validate_report_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    a = report(tmp_path / "a.json", "int8", {1: 1.0}, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="baseline: x.json is not a validate report"):
        run_stage(CompareReports, tmp_path / "o", inputs={"candidate": a, "baseline": tmp_path / "x.json"})


def test_every_output_is_compared_and_the_labels_output_comes_first(tmp_path: Path) -> None:
    def two(path: Path, stage: str, acc: float, cos: float) -> Path:
        report(path, stage, {1: 100.0}, 1.0, 1.0, 0.9)
        r = json.loads(path.read_text())
        r["data"] = {"labels_output": "logits"}
        r["outputs"] = {
            "emb": {"role": "embedding", "figures": {"cosine": cos, "rel_error": 0.1}},
            "logits": {"role": "classification", "figures": {"top1_agreement": 0.9, "accuracy": acc}},
        }
        path.write_text(json.dumps(r))
        return path

    a, b = two(tmp_path / "a.json", "int8", 0.9, 0.95), two(tmp_path / "b.json", "fp32", 0.95, 1.0)
    summary = run_stage(CompareReports, tmp_path / "out", inputs={"candidate": a, "baseline": b})
    assert summary["acc_change(logits)"] == -0.05
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| cosine (emb) | 0.95 | 1 |  |" in md and "| rel_error (emb) | 0.1 | 0.1 |  |" in md
    assert "| accuracy (logits) | 0.9 | 0.95 |  |" in md and "| role (emb) | embedding | embedding |  |" in md
    assert md.index("(logits)") < md.index("(emb)")


def with_engine(path: Path, info: EngineInfo | None, runner: str, precision: str, **candidate: Any) -> Path:
    """A report whose candidate carries what validate writes: runner, precision, backend and engine_info."""
    r = json.loads(path.read_text())
    r["candidate"].update(
        runner=runner,
        precision=precision,
        backend=runner,
        **candidate,
        engine_info=info.as_json(details=False) if info else None,
    )
    path.write_text(json.dumps(r))
    return path


OV_INT8 = EngineInfo(
    backend="openvino",
    precision="int8",
    inference_precision="bf16",
    device=EngineDevice(device="CPU"),
    toolchain={"openvino": "2026.4.1"},
    reproduce=("python", "-c", "pass"),
    inputs=(TensorInfo(name="x", dtype="float32", dims=("1..8", 4)),),
    outputs=(TensorInfo(name="logits", dtype="float32", dims=("1..8", 10)),),
)
TRT_FP16 = OV_INT8.model_copy(
    update={
        "backend": "tensorrt",
        "precision": "fp16",
        "inference_precision": None,
        "device": EngineDevice(device="NVIDIA L4", compute_capability="8.9"),
        "toolchain": {"tensorrt": "10.13.0.35", "cuda": "12.8"},
    }
)


def test_backend_precision_and_toolchain_come_from_the_engine_info(tmp_path: Path) -> None:
    a = with_engine(
        report(tmp_path / "a.json", "ov_int8", {8: 200.0}, 5.0, 25.0, 0.97),
        OV_INT8,
        "openvino",
        "int8 (bf16 exec)",
        execution_precision="bf16",
        openvino="2026.4.1-full",
    )
    b = with_engine(
        report(tmp_path / "b.json", "trt_fp16", {8: 100.0}, 10.0, 50.0, 0.999), TRT_FP16, "tensorrt", "fp16 (tensorrt)"
    )
    run_stage(CompareReports, tmp_path / "out", inputs={"candidate": a, "baseline": b})
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| backend | openvino on CPU | tensorrt on NVIDIA L4 (sm 8.9) |  |" in md
    assert "| precision | int8 (bf16 exec) | fp16 |  |" in md
    assert "| toolchain | openvino 2026.4.1 | tensorrt 10.13.0.35, cuda 12.8 |  |" in md
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    cand, base = result["candidate"], result["baseline"]
    assert cand["precision"] == "int8 (bf16 exec)" and base["precision"] == "fp16 (tensorrt)"  # the runner's, kept
    assert (cand["backend"], base["backend"]) == ("openvino", "tensorrt")
    assert cand["engine"] == {
        "precision": "int8",
        "inference_precision": "bf16",
        "device": "CPU",
        "execution_precision": "bf16",
    }
    assert base["toolchain"] == {"tensorrt": "10.13.0.35", "cuda": "12.8"}
    # An f32-hint engine that ran in f32 shows no exec note; an ONNX candidate (no engine.json) shows its runner's.
    fp32 = OV_INT8.model_copy(update={"precision": "fp32", "inference_precision": "f32"})
    with_engine(a, fp32, "openvino", "f32", execution_precision="f32")
    with_engine(b, None, "onnxruntime", "int8 (onnxruntime)", onnxruntime="1.22.0")
    run_stage(CompareReports, tmp_path / "out2", inputs={"candidate": a, "baseline": b})
    md = (tmp_path / "out2" / "compare.md").read_text()
    assert "| backend | openvino on CPU | onnxruntime |  |" in md
    assert "| precision | fp32 | int8 (onnxruntime) |  |" in md
    assert "| toolchain | openvino 2026.4.1 | onnxruntime 1.22.0 |  |" in md


def test_reports_without_engine_info_still_compare(tmp_path: Path) -> None:
    """Reports written before engine_info was embedded: backend and precision from the runner's fields."""
    a = report(tmp_path / "a.json", "int8", {1: 150.0}, 5.0, 25.0, 0.97)
    b = report(tmp_path / "b.json", "fp16", {1: 100.0}, 10.0, 50.0, 0.999)
    run_stage(CompareReports, tmp_path / "out", inputs={"candidate": a, "baseline": b})
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| backend | - | - |  |" in md and "| precision | int8 | fp16 |  |" in md


def test_a_malformed_engine_info_is_one_line_naming_the_report(tmp_path: Path) -> None:
    a = with_engine(report(tmp_path / "a.json", "int8", {1: 1.0}, 1.0, 1.0, 1.0), OV_INT8, "openvino", "int8")
    b = report(tmp_path / "b.json", "fp16", {1: 1.0}, 1.0, 1.0, 1.0)
    r = json.loads(a.read_text())
    r["candidate"]["engine_info"]["precision"] = "int4"
    a.write_text(json.dumps(r))
    with pytest.raises(
        ValueError,
        match=r"^candidate: a.json candidate.engine_info: precision: Input should be "
        r"'int8', 'fp8', 'fp16', 'bf16' or 'fp32'$",
    ):
        run_stage(CompareReports, tmp_path / "o", inputs={"candidate": a, "baseline": b})
