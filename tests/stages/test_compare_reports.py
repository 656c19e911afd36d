"""report.compare on hand-made validate reports: ratios, flags, the optional speed-up gate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_stage

from pipeline.errors import GateFailed
from stages.compare_reports import CompareReports


def report(path: Path, stage: str, fps: dict[int, float], p50: float, size: float, cos: float) -> Path:
    timing = [{"mode": "latency", "batch": 1, "p50_ms": p50, "throughput": 1000 / p50}]
    timing += [{"mode": "throughput", "batch": b, "p50_ms": 1.0, "throughput": v} for b, v in fps.items()]
    path.write_text(json.dumps({
        "stage": stage, "gates_passed": 2, "gates_total": 2, "timing": {"candidate": timing, "reference": []},
        "candidate": {"precision": stage, "size_mb": size},
        "outputs": {"logits": {"figures": {"centered_cosine": cos, "max_abs": 0.5}}}}))
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
        r["outputs"] = {"emb": {"role": "embedding", "figures": {"cosine": cos, "rel_error": 0.1}},
                        "logits": {"role": "classification", "figures": {"top1_agreement": 0.9, "accuracy": acc}}}
        path.write_text(json.dumps(r))
        return path

    a, b = two(tmp_path / "a.json", "int8", 0.9, 0.95), two(tmp_path / "b.json", "fp32", 0.95, 1.0)
    summary = run_stage(CompareReports, tmp_path / "out", inputs={"candidate": a, "baseline": b})
    assert summary["acc_change(logits)"] == -0.05
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| cosine (emb) | 0.95 | 1 |  |" in md and "| rel_error (emb) | 0.1 | 0.1 |  |" in md
    assert "| accuracy (logits) | 0.9 | 0.95 |  |" in md and "| role (emb) | embedding | embedding |  |" in md
    assert md.index("(logits)") < md.index("(emb)")
