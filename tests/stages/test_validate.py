"""validate called directly: an OpenVINO IR against its ONNX passes; a perturbed engine fails with the figure
and threshold named, after writing its report; data and reference problems show up as warnings.

Timing parameters stay tiny and nothing asserts on speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from graphs import classifier, ir_from_onnx, save
from harness import run_stage
from onnx import numpy_helper

from pipeline.errors import GateFailed
from pipeline.stage import DatasetInput
from stages.runtimes import engine_info
from stages.validate import Validate

SPEC = {"tensors": {"input": {"shape": ["batch", 3, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 16}}}
QUICK = {"latency": False, "throughput_batches": []}  # numerics only


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return save(classifier(), tmp_path / "ref" / "model.onnx")


@pytest.fixture
def labelled(tmp_path: Path) -> DatasetInput:
    rng = np.random.default_rng(5)
    np.savez(
        tmp_path / "val.npz",
        input=rng.standard_normal((40, 3, 8, 8)).astype(np.float32),
        labels=rng.integers(0, 10, 40),
    )
    return DatasetInput("val", {"kind": "npz", "path": "val.npz", "labels": "labels"}, tmp_path)


def synthetic(tmp_path: Path, count: int = 24) -> DatasetInput:
    return DatasetInput("rand", {"kind": "synthetic", "count": count, "seed": 3}, tmp_path)


def validate(out: Path, candidate: Path, reference: Path, data: DatasetInput, **params: Any) -> dict[str, Any]:
    return run_stage(
        Validate, out, params, inputs={"candidate": candidate, "reference": reference, "data": data}, model=SPEC
    )


def report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


def perturbed(reference: Path, path: Path, delta: float) -> Path:
    """The reference with one Gemm weight changed by `delta`: a subtly broken engine."""
    model = onnx.load(reference)
    for init in model.graph.initializer:
        if init.name == "gw":
            w = numpy_helper.to_array(init).copy()
            w[3, 17] += delta
            init.CopyFrom(numpy_helper.from_array(w, "gw"))
    return save(model, path)


def test_openvino_ir_passes_against_its_onnx(tmp_path: Path, reference: Path, labelled: DatasetInput) -> None:
    ir = ir_from_onnx(reference, tmp_path / "ir")
    out = tmp_path / "out"
    summary = validate(out, ir, reference, labelled, min_seconds=0.1, warmup=1, throughput_batches=[1, 4])
    r = report(out)
    assert r["passed"] and summary["gates"] == f"{r['gates_total']}/{r['gates_total']} passed"
    assert summary["precision"] == "f32" and r["candidate"]["runner"] == "openvino"
    assert {g["metric"] for g in r["gates"]} >= {
        "finite",
        "shape",
        "centered_cosine_min",
        "top1_agreement_min",
        "max_abs",
    }  # the fp32 defaults
    figs = r["outputs"]["logits"]["figures"]
    assert figs["max_abs"] < 1e-4 and figs["centered_cosine"] > 0.9999 and figs["top1_agreement"] == 1.0
    assert figs["accuracy"] == figs["reference_accuracy"] and figs["accuracy_drop"] == 0.0
    assert r["outputs"]["logits"]["insensitive"] is None and r["outputs"]["logits"]["sensitivity"]["distinct_top1"] > 1
    # every declared batch point ran on real samples, each sample exactly once
    assert {1, 4, 16} <= set(r["numerics_batches"]) and sum(r["numerics_batches"]) == 40
    assert {p: v["source"] for p, v in r["points"].items()} == {"min": "dataset", "opt": "dataset", "max": "dataset"}
    timing = {(t["mode"], t["batch"]): t for t in r["timing"]["candidate"]}
    assert set(timing) == {("latency", 1), ("throughput", 1), ("throughput", 4)} and not r["timing"]["reference"]
    assert all(t["p50_ms"] <= t["p99_ms"] and t["throughput"] > 0 for t in timing.values())
    assert {"p50_ms", "fps_b1", "fps_b4", "top1(logits)", "accuracy", "max_abs(logits)"} <= set(summary)
    assert summary["roles"] == "logits=cls" and r["outputs"]["logits"]["role"] == "classification"
    env = r["environment"]
    assert env["cpu"] and "cpu_flags" in env and env["openvino"] and env["onnxruntime"]
    assert env["candidate_precision"] == "f32" and r["candidate"]["latency"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert not any("synthetic" in w for w in r["warnings"])
    md = (out / "report.md").read_text()
    assert md.startswith("# validate") and "PASSED" in md and "| PASS | logits | centered cosine >=" in md
    assert "would pass" in md and "## Timing" in md and "avx" in md


def test_an_engine_from_build_openvino_passes(tmp_path: Path, reference: Path, labelled: DatasetInput) -> None:
    build = pytest.importorskip("stages.build_openvino")
    run_stage(
        build.BuildOpenvino, tmp_path / "build", {"inference_precision": "f32"}, inputs={"model": reference}, model=SPEC
    )
    summary = validate(tmp_path / "out", tmp_path / "build" / "model", reference, labelled, **QUICK)
    r = report(tmp_path / "out")
    assert r["passed"] and summary["precision"] == "f32" and r["candidate"]["requested_precision"] == "f32"
    assert r["outputs"]["logits"]["figures"]["max_abs"] < 1e-4
    # The candidate's description embeds the build's EngineInfo (no details), next to what the runner reports.
    built = engine_info.read(tmp_path / "build" / "model")
    c = r["candidate"]
    assert c["engine_info"] == built.as_json(details=False) and c["backend"] == "openvino"
    assert engine_info.parse(c["engine_info"], "report") == built.model_copy(update={"details": {}})
    assert c["runner"] == "openvino" and c["precision"] == "f32" and c["size_mb"] > 0  # the fields CI reads stay
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"- engine (engine.json): openvino, fp32 (inference precision f32), for CPU; openvino {ov_version()}" in md


def test_a_candidate_without_engine_json_is_described_by_its_runner(tmp_path: Path, reference: Path) -> None:
    validate(tmp_path / "plain", reference, reference, synthetic(tmp_path), **QUICK)  # an ONNX file: no engine.json
    c = report(tmp_path / "plain")["candidate"]
    assert c["engine_info"] is None and c["backend"] == c["runner"] == "onnxruntime"
    assert "engine (engine.json)" not in (tmp_path / "plain" / "report.md").read_text()


def test_each_timing_names_the_input_shape_it_timed(tmp_path: Path, reference: Path) -> None:
    """A latency or throughput figure means little without the shape fed: report.json and report.md say it."""
    out = tmp_path / "timed"
    quick = {"min_seconds": 0.02, "warmup": 1, "time_reference": True}
    validate(out, reference, reference, synthetic(tmp_path), throughput_batches=[4], **quick)
    timing = report(out)["timing"]
    shapes = {(who, t["mode"], t["batch"]): t["input"] for who in timing for t in timing[who]}
    assert shapes == {
        (who, mode, b): {"input": [b, 3, 8, 8]}
        for who in ("candidate", "reference")
        for mode, b in (("latency", 1), ("throughput", 4))
    }
    md = (out / "report.md").read_text().split("## Timing")[1]
    assert "| engine | mode | batch | input | requests |" in md
    assert "| candidate | throughput | 4 | input: [4, 3, 8, 8] |" in md
    assert "| reference | latency | 1 | input: [1, 3, 8, 8] |" in md


def ov_version() -> str:
    import openvino as ov

    return ov.get_version()


def test_a_perturbed_candidate_fails_naming_figure_and_threshold(
    tmp_path: Path, reference: Path, labelled: DatasetInput
) -> None:
    candidate = perturbed(reference, tmp_path / "bad" / "model.onnx", delta=3.0)
    out = tmp_path / "out"
    with pytest.raises(GateFailed) as failed:
        validate(out, candidate, reference, labelled, gates={"centered_cosine_min": 0.9999, "max_abs": 1e-3}, **QUICK)
    failures = failed.value.failures
    assert any(f.startswith("logits: centered cosine 0.") and f.endswith("< 0.9999") for f in failures), failures
    assert any(f.startswith("logits: max_abs ") and f.endswith("> 0.001") for f in failures), failures
    assert failed.value.exit_code == 3
    # the report was written before the gate raised, and says what would have passed
    r = report(out)
    assert not r["passed"] and r["gates_passed"] == r["gates_total"] - 2
    bad = {g["metric"]: g for g in r["gates"] if not g["passed"]}
    assert bad["max_abs"]["would_pass"] >= bad["max_abs"]["observed"] > 1e-3
    assert bad["centered_cosine_min"]["would_pass"] <= bad["centered_cosine_min"]["observed"] < 0.9999
    assert bad["max_abs"]["text"].startswith("FAILED | logits | max_abs ")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "FAILED" in md and "| **FAIL** | logits | max_abs <=" in md


def test_a_slightly_perturbed_candidate_passes_loose_gates_and_fails_tight_ones(
    tmp_path: Path, reference: Path, labelled: DatasetInput
) -> None:
    candidate = perturbed(reference, tmp_path / "bad" / "model.onnx", delta=0.001)
    validate(tmp_path / "loose", candidate, reference, labelled, gates={"max_abs": 0.1}, **QUICK)
    with pytest.raises(GateFailed, match=r"logits: max_abs [0-9.e-]+ > 1e-05"):
        validate(tmp_path / "tight", candidate, reference, labelled, gates={"max_abs": 1e-5}, **QUICK)


def test_synthetic_data_is_warned_about_first(tmp_path: Path, reference: Path) -> None:
    validate(tmp_path / "out", reference, reference, synthetic(tmp_path), **QUICK)
    r = report(tmp_path / "out")
    assert r["passed"] and r["data"]["synthetic"]
    assert any("synthetic random data" in w for w in r["warnings"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "synthetic random data" in md and md.index("## Warnings") < md.index("## Gates")


def test_an_insensitive_reference_is_warned_about_but_its_gate_is_kept(tmp_path: Path) -> None:
    bias = np.zeros(10, np.float32)
    bias[7] = 50.0  # class 7 wins whatever the input
    flat = save(classifier(bias=bias), tmp_path / "flat.onnx")
    # no labels: only labels_output makes (batch, 10) a classification output (gated on top-1 agreement)
    validate(tmp_path / "out", flat, flat, synthetic(tmp_path, 32), labels_output="logits", **QUICK)
    r = report(tmp_path / "out")
    assert r["outputs"]["logits"]["insensitive"] == (
        "agreement figures cannot tell a good engine from a broken one: all 32 inputs give the same top-1 class"
    )
    assert any(w.startswith("gate top1_agreement_min on logits is uninformative") for w in r["warnings"])
    assert "top1_agreement_min" in {g["metric"] for g in r["gates"]}  # warned, never swapped for another metric
    assert "all 32 inputs give the same top-1 class" in (tmp_path / "out" / "report.md").read_text()


def test_a_static_engine_fails_the_shape_gate_at_the_points_it_cannot_take(
    tmp_path: Path, reference: Path, labelled: DatasetInput
) -> None:
    ir = ir_from_onnx(reference, tmp_path / "ir", static_shape=[4, 3, 8, 8])  # batch baked to opt
    with pytest.raises(GateFailed, match="logits: shape check failed") as failed:
        validate(tmp_path / "out", ir, reference, labelled, **QUICK)
    assert any("batch 1 (input 3x8x8): the candidate raised" in f for f in failed.value.failures)
    assert (tmp_path / "out" / "report.json").is_file()


def test_points_the_samples_cannot_fill_are_still_checked(tmp_path: Path, reference: Path) -> None:
    validate(tmp_path / "out", reference, reference, synthetic(tmp_path, 6), **QUICK)  # 6 samples, max batch 16
    r = report(tmp_path / "out")
    assert r["points"]["max"]["source"] == "dataset samples, tiled"
    assert r["points"]["max"]["outputs"]["logits"]["reference_shape"] == [16, 10]
    assert {g["output"] for g in r["gates"]} >= {"logits @max"} and r["passed"]


def test_accuracy_gate_without_labels_fails_and_says_why(tmp_path: Path, reference: Path) -> None:
    with pytest.raises(GateFailed, match="accuracy n/a") as failed:
        validate(tmp_path / "out", reference, reference, synthetic(tmp_path), gates={"accuracy_min": 0.5}, **QUICK)
    assert "no output could be evaluated" in failed.value.failures[0]


def test_bf16_candidate_gets_the_looser_default_gates(tmp_path: Path, reference: Path, labelled: DatasetInput) -> None:
    ir = ir_from_onnx(reference, tmp_path / "ir", precision="bf16")
    try:
        validate(tmp_path / "out", ir, reference, labelled, **QUICK)
    except GateFailed:
        pass  # bf16 may legitimately miss a default here; the thresholds are what this test checks
    r = report(tmp_path / "out")
    gates = {g["metric"]: g["threshold"] for g in r["gates"]}
    if r["environment"]["candidate_precision"] == "bf16":
        assert gates["centered_cosine_min"] == 0.99 and "max_abs" not in gates
    else:  # a CPU without bf16 runs f32 and is held to the f32 defaults
        assert gates["centered_cosine_min"] == 0.9999


def test_params_are_checked(tmp_path: Path, reference: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as unknown:
        Validate.Params.model_validate({"gates": {"cosine": 0.9}})
    (error,) = unknown.value.errors()
    assert error["loc"] == ("gates", "cosine") and error["msg"].startswith("unknown gate (did you mean")
    with pytest.raises(ValidationError) as not_a_number:
        Validate.Params.model_validate({"per_output": {"logits": {"max_abs": True}}})
    assert not_a_number.value.errors()[0]["loc"] == ("per_output", "logits", "max_abs")
    assert not_a_number.value.errors()[0]["msg"] == "expected a finite number (got True)"
    with pytest.raises(ValueError, match="not an output of the reference"):
        validate(
            tmp_path / "out", reference, reference, synthetic(tmp_path), per_output={"logit": {"max_abs": 1}}, **QUICK
        )


def test_toolchain_names_the_cpu_and_its_isa() -> None:
    from pipeline.keys.compute import toolchain_of

    tc = toolchain_of(Validate(), Validate.Params.model_validate({}))
    assert {"cpu", "cpu_flags", "cpus", "gpu", "onnxruntime", "openvino"} <= set(tc)
    assert {"onnxruntime", "openvino"} <= set(Validate().toolchain()) and "cpu" not in Validate().toolchain()
    assert tc["cpu"] and Validate().unmet() is None


def test_batch_schedule_covers_every_sample_once_and_every_point_it_can() -> None:
    from pipeline.schema import ModelSpec
    from stages.validation.samples import schedule as _schedule

    dyn = ModelSpec.model_validate(SPEC)
    plan = _schedule(32, [1, 4, 16], "batch", dyn)
    assert [(s, c) for s, c, _ in plan] == [(0, 1), (1, 4), (5, 16), (21, 1), (22, 4), (26, 6)]  # rest in one batch
    assert all(size == count for _, count, size in plan)
    floor = ModelSpec.model_validate({**SPEC, "dims": {"batch": {"min": 4, "opt": 8, "max": 16}}})
    assert _schedule(30, [4, 8, 16], "batch", floor)[-1] == (28, 2, 4)  # below min: padded, padding dropped
    static = ModelSpec.model_validate({"tensors": {"input": {"shape": [8, 3, 8, 8]}}})
    assert _schedule(20, [8], 8, static) == [(0, 8, 8), (8, 8, 8), (16, 4, 8)]
