"""report.compare's per-layer differences: two real validate reports (an FP32 and an INT8 IR of one classifier), and
hand-made ones for the matching, the per-type rest, the order, and reports from before layers were profiled."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graphs import classifier, ir_from_onnx, save
from harness import run_stage

from pipeline.stage import DatasetInput
from stages.compare_reports import CompareReports
from stages.validate import Validate
from stages.validation.layer_diff import layer_diff

SPEC = {"tensors": {"input": {"shape": ["batch", 3, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 16}}}


def test_an_int8_ir_against_its_fp32_ir_layer_by_layer(tmp_path: Path) -> None:
    os.environ.setdefault("NNCF_CI", "1")
    nncf = pytest.importorskip("nncf")
    import openvino as ov

    rng = np.random.default_rng(3)
    onnx_path = save(classifier(), tmp_path / "ref" / "model.onnx")
    fp32 = ir_from_onnx(onnx_path, tmp_path / "fp32")
    calib = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(16)]
    (tmp_path / "int8").mkdir()
    quantized = nncf.quantize(ov.Core().read_model(str(onnx_path)), nncf.Dataset(calib), subset_size=16)
    ov.save_model(quantized, str(tmp_path / "int8" / "model.xml"), compress_to_fp16=False)
    np.savez(tmp_path / "val.npz", input=rng.standard_normal((16, 3, 8, 8)).astype(np.float32))
    data = DatasetInput("val", {"kind": "npz", "path": "val.npz"}, tmp_path)
    params = {"min_seconds": 0.1, "warmup": 1, "throughput_batches": [1], "profile_runs": 5, "gates": {}}
    for name, ir in (("fp32", fp32), ("int8", tmp_path / "int8")):
        inputs = {"candidate": ir, "reference": onnx_path, "data": data}
        run_stage(Validate, tmp_path / f"v_{name}", params, inputs=inputs, model=SPEC)
    reports = {n: tmp_path / f"v_{n}" / "report.json" for n in ("int8", "fp32")}
    run_stage(CompareReports, tmp_path / "cmp", inputs={"candidate": reports["int8"], "baseline": reports["fp32"]})

    diff = json.loads((tmp_path / "cmp" / "compare.json").read_text())["layers"]
    conv = next(m for m in diff["matched"] if m["candidate"]["type"] == "Convolution")  # same node name in both IRs
    assert (conv["candidate"]["precision"], conv["baseline"]["precision"]) == ("int8", "fp32")
    assert conv["delta_ms"] == pytest.approx(conv["candidate"]["time_ms"] - conv["baseline"]["time_ms"])
    deltas = [abs(m["delta_ms"]) for m in diff["matched"]]
    assert deltas == sorted(deltas, reverse=True)
    # INT8 adds layers FP32 has not (FakeQuantize, the quantized FullyConnected): summed per type, never lost
    types = {g["type"]: g for g in diff["by_type"]}
    assert "FakeQuantize" in types and types["FakeQuantize"]["baseline"]["layers"] == 0
    counted = len(diff["matched"]) + sum(g["candidate"]["layers"] for g in diff["by_type"])
    assert counted == diff["layers"]["candidate"] == len(json.loads(reports["int8"].read_text())["layers"])
    assert "int8" in diff["precision_share"]["candidate"] and "int8" not in diff["precision_share"]["baseline"]
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "## Layers" in md and "Layers matched by name" in md and "summed by type" in md
    assert f"| {conv['name']} | Convolution |" in md and "| time in int8 |" in md


def side(path: Path, stage: str, layers: list[dict[str, Any]] | None) -> Path:
    report: dict[str, Any] = {
        "stage": stage,
        "gates_passed": 1,
        "gates_total": 1,
        "timing": {"candidate": [{"mode": "throughput", "batch": 1, "p50_ms": 1.0, "throughput": 100.0}]},
        "candidate": {"precision": stage, "size_mb": 1.0},
        "outputs": {"y": {"figures": {"max_abs": 0.1}}},
    }
    if layers is not None:
        report["layers"] = layers
        report["layer_summary"] = {"precision_share": {}} if layers else {"note": "per-layer profiling off"}
    path.write_text(json.dumps(report))
    return path


def row(name: str, kind: str, precision: str, ms: float | None) -> dict[str, Any]:
    return {"name": name, "type": kind, "kernel": "k", "precision": precision, "time_ms": ms, "share": None}


def test_matching_the_rest_by_type_and_the_order() -> None:
    cand = {"layers": [row("a", "Conv", "int8", 1.0), row("b", "Conv", "int8", 0.2), row("q", "Quant", "int8", 0.3)]}
    base = {"layers": [row("a", "Conv", "fp32", 1.1), row("b", "Conv", "fp32", 2.0), row("x", "Conv", "fp32", 0.4)]}
    diff = layer_diff(cand, base)
    assert [(m["name"], round(m["delta_ms"], 6)) for m in diff["matched"]] == [("b", -1.8), ("a", -0.1)]
    assert (
        diff["matched"][0]["candidate"]["precision"] == "int8" and diff["matched"][0]["baseline"]["precision"] == "fp32"
    )
    by_type = {g["type"]: g for g in diff["by_type"]}
    assert by_type["Quant"]["candidate"] == {"layers": 1, "time_ms": 0.3, "precisions": ["int8"]}
    assert by_type["Quant"]["baseline"]["layers"] == 0 and by_type["Conv"]["delta_ms"] == pytest.approx(-0.4)
    assert [g["type"] for g in diff["by_type"]] == ["Conv", "Quant"]  # |-0.4| before |+0.3|
    assert diff["sum_ms"] == {"candidate": pytest.approx(1.5), "baseline": pytest.approx(3.5)}
    untimed = layer_diff({"layers": [row("a", "Conv", "int8", None)]}, {"layers": [row("a", "Conv", "fp32", 1.0)]})
    assert untimed["matched"][0]["delta_ms"] is None


def test_a_report_without_layers_gives_a_note_not_a_crash(tmp_path: Path) -> None:
    old = side(tmp_path / "old.json", "old", None)
    off = side(tmp_path / "off.json", "off", [])
    new = side(tmp_path / "new.json", "new", [row("a", "Conv", "int8", 1.0)])
    summary = run_stage(CompareReports, tmp_path / "o1", inputs={"candidate": new, "baseline": old})
    assert summary == {"speedup_b1": 1.0, "flags": 1}  # the usual flag (not faster), none for the missing layers
    result = json.loads((tmp_path / "o1" / "compare.json").read_text())
    assert result["layers"] == {
        "note": "baseline (old) has no per-layer profile: a report from before validate profiled layers"
    }
    assert "_baseline (old) has no per-layer profile" in (tmp_path / "o1" / "compare.md").read_text()
    run_stage(CompareReports, tmp_path / "o2", inputs={"candidate": off, "baseline": old})
    note = json.loads((tmp_path / "o2" / "compare.json").read_text())["layers"]["note"]
    assert note.startswith("candidate (off) has no per-layer profile: per-layer profiling off; baseline (old)")


def test_profiles_of_different_inputs_are_compared_with_a_warning() -> None:
    """A fixed-batch-8 engine profiled at batch 8 against one profiled at batch 1 does 8x the work per layer:
    the table would rank that as a regression, so the diff says the inputs differ."""
    from stages.validation.layer_diff import diff_markdown

    cand = {"layers": [row("a", "Conv", "int8", 8.0)], "layer_summary": {"input": {"x": [8, 3, 8, 8]}}}
    base = {"layers": [row("a", "Conv", "fp32", 1.0)], "layer_summary": {"input": {"x": [1, 3, 8, 8]}}}
    diff = layer_diff(cand, base)
    assert diff["warnings"] == [
        "the layers were profiled on different inputs (candidate {'x': [8, 3, 8, 8]}, baseline {'x': [1, 3, 8, 8]}): "
        "their times compare different work"
    ]
    assert any(line.startswith("**Warning:** the layers were profiled") for line in diff_markdown(diff, "c", "b"))
    base["layer_summary"]["input"] = {"x": [8, 3, 8, 8]}
    assert layer_diff(cand, base)["warnings"] == []
