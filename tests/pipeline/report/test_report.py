"""The reporters, fed events directly: the end-of-run summary in a CI log, the run record's words."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.report.console import ConsoleReporter
from pipeline.report.record import RunRecordReporter
from pipeline.report.summary import headline
from pipeline.run.events import (
    Event,
    RunFinished,
    RunStarted,
    StageCached,
    StageErrored,
    StageFinished,
    StageNotRun,
    StageSkipped,
    StageUnavailable,
)
from pipeline.status import Status

RUN_ID = "20261204-165226-20600"
VALIDATE = {
    "fps_b1": 9530.0,
    "fps_b8": 21761.9,
    "gates": "8/8 passed",
    "iou(mask)": 1.0,
    "max_abs(mask)": 7.15e-07,
    "p50_ms": 0.139,
    "precision": "f32",
    "roles": "logits=cls emb=emb mask=dense",
    "size_mb": 0.14,
    "top1(logits)": 0.9922,
    "cos(emb)": 0.99987,
}
QUANT = {
    "int8_ops": 7,
    "int8_weights": 6,
    "model_type": "none (auto: no attention found)",
    "samples": 300,
    "seconds": 0.49,
    "synthetic": False,
}
GATE = (
    "gate failed: cos(emb) 0.981 < 0.990 (would pass at 0.98); top1(logits) 0.91 < 0.95; iou(mask) 0.7 < 0.9 "
    "(reports: artifacts/runs/x/check_int8.workdir/out)"
)


def events() -> list[Event]:
    """A run with a validate row, a cached row, a failed row, an unavailable row and the rows they cause."""
    stages = ["export_a_rather_long_stage_name", "quant_ov", "check_ov", "check_int8", "tensorrt", "after", "later"]
    return [
        RunStarted("toy", RUN_ID, stages),
        StageFinished(
            stages[0],
            "export.onnx",
            ("never built",),
            2.84,
            {"model": "artifacts/resnet/export/model.onnx"},
            {"check_max_abs": 2.38e-07, "export_s": 2.84, "exporter": "dynamo", "opset": 20},
            False,
        ),
        StageCached(
            "quant_ov",
            "quantize.nncf",
            {"model": "artifacts/resnet/quant_ov/model.onnx"},
            QUANT,
            "2026-12-04T16:52:26+00:00",
        ),
        StageFinished(
            "check_ov",
            "validate",
            ("input candidate changed: the engine was rebuilt with other flags",),
            12.3,
            {"report": "artifacts/resnet/check_ov/report"},
            VALIDATE,
            False,
        ),
        StageErrored(
            "check_int8",
            "validate",
            GATE,
            "artifacts/runs/x/logs/check_int8.log",
            3.2,
            gate=True,
            kept="artifacts/runs/x/check_int8.workdir/out",
        ),
        StageUnavailable(
            "tensorrt",
            "build.tensorrt",
            "needs an NVIDIA GPU (probed: no /dev/nvidia0); pip install '.[tensorrt]' on a GPU host",
        ),
        StageSkipped("after", "toy.upper", "tensorrt unavailable"),
        StageNotRun("later", "toy.write"),
        RunFinished(RUN_ID, 20.1, 3, {}, f"artifacts/runs/{RUN_ID}"),
    ]


def summary_lines(width: int, terminal: bool = False) -> list[str]:
    buf = io.StringIO()
    reporter = ConsoleReporter(stream=buf)
    reporter.console = Console(
        file=buf, width=width, highlight=False, soft_wrap=True, force_terminal=terminal, color_system=None
    )
    for event in events():
        reporter.handle(event)
    lines = buf.getvalue().splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith(f"run {RUN_ID}")) :]


def test_ci_log_summary_is_one_line_per_stage_and_fits_80_columns() -> None:
    lines = summary_lines(80)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert lines[0] == f"run {RUN_ID}: 20.1s, exit 3"
    assert lines[1].split() == ["stage", "status", "s", "why"]
    rows = {line.split()[0]: i for i, line in enumerate(lines) if line and not line[0].isspace()}
    # the stage's own line, and one indented line of headline figures when it has figures
    assert lines[rows["export_a_rather_long_st…"] + 1].split()[0] == "check_max_abs=2.38e-07,"
    ov = lines[rows["check_ov"]]
    assert ov.split()[:3] == ["check_ov", "ran", "12.3"] and ov.endswith("…")  # a long why is cut, not wrapped
    assert lines[rows["check_ov"] + 1].strip() == "gates=8/8 passed, iou(mask)=1, top1(logits)=0.9922"
    assert "unchanged, built 12-04 16:52" in lines[rows["quant_ov"]]
    assert lines[rows["quant_ov"] + 1].strip() == "int8_ops=7, int8_weights=6, samples=300"
    failed = lines[rows["check_int8"]]
    assert failed.split()[1:4] == ["gate", "failed", "3.2"] and "cos(emb) 0.981 < 0.990" in failed
    assert lines[rows["check_int8"] + 1].split()[0] == "tensorrt"  # a failed row has no figures line
    assert lines[rows["tensorrt"]].split()[1] == "unavailable" and "NVIDIA GPU" in lines[rows["tensorrt"]]
    assert "upstream: tensorrt unavailable" in lines[rows["after"]] and "stopped by a failure" in lines[rows["later"]]
    # every stage is there, each in at most two lines; the footer names where the full figures are
    assert len(lines) == 2 + 7 + 3 + 2  # title and header, a line per stage, 3 figure lines, the footer
    assert lines[-2] == f"full figures and reasons: artifacts/runs/{RUN_ID}/run.json"
    assert lines[-1] == "outputs: artifacts/resnet/STAGE/ (`pipeline show RECIPE STAGE`)"


def test_a_wider_log_cuts_less() -> None:
    lines = summary_lines(160)
    assert any("input candidate changed: the engine was rebuilt with other flags" in line for line in lines)
    assert sum(1 for line in lines if line.startswith("check_ov")) == 1


def test_a_wide_terminal_keeps_the_full_table() -> None:
    text = "\n".join(summary_lines(200, terminal=True))
    assert "┏" in text and "fps_b8=" in text and "p50_ms=" in text  # every figure, not the headline three
    assert "artifacts/resnet/check_ov/report" in text and "artifacts/runs/x/logs/check_int8.log" in text


@pytest.mark.parametrize(
    "summary, expected",
    [
        (VALIDATE, ["gates=8/8 passed", "iou(mask)=1", "top1(logits)=0.9922"]),  # in the order validate wrote
        (
            {"max_abs(mask)": 1e-6, "iou(mask)": 0.98, "p50_ms": 1.0},
            ["iou(mask)=0.98", "max_abs(mask)=1e-06", "p50_ms=1"],
        ),
        (
            {"size_mb": 0.1, "check_cosine": 1.0, "warning": "calibrating on synthetic random data: scales are wrong"},
            ["check_cosine=1", "size_mb=0.1"],
        ),
        (
            {
                "gates": "7/8 passed, 1 not evaluated",
                "not_evaluated": "cos(emb)",
                "size_mb": 2.0,
            },  # the verdict, however long
            ["gates=7/8 passed, 1 not evaluated", "size_mb=2", "not_evaluated=cos(emb)"],
        ),
        ({}, []),
    ],
)
def test_headline_figures_put_the_verdict_and_named_outputs_first(summary: dict, expected: list[str]) -> None:
    assert headline(summary) == expected


def test_run_record_keeps_the_words_ci_scripts_read(tmp_path: Path) -> None:
    record = RunRecordReporter(tmp_path, tmp_path / "toy.yaml")
    for event in events():
        record.handle(event)
    written = json.loads((tmp_path / RUN_ID / "run.json").read_text())
    words = {s["stage"]: s["status"] for s in written["stages"]}
    assert words == {
        "export_a_rather_long_stage_name": "ran",
        "quant_ov": "cached",
        "check_ov": "ran",
        "check_int8": "gate failed",
        "tensorrt": "unavailable",
        "after": "skipped",
        "later": "not run",
    }
    assert all(type(s["status"]) is str for s in record.to_json()["stages"])  # plain words, not the enum


def test_status_words_are_the_json_words() -> None:
    assert {s.value for s in Status} >= {
        "run",
        "waits",
        "cached",
        "ran",
        "failed",
        "gate failed",
        "unavailable",
        "skipped",
        "not run",
        "up to date",
        "stale",
    }
    assert f"{Status.GATE_FAILED}" == str(Status.GATE_FAILED) == "gate failed"
    assert json.dumps({Status.NOT_RUN: Status.RAN}) == '{"not run": "ran"}'
    assert Status.GATE_FAILED.failed and not Status.RAN.failed and Status.CACHED.built and not Status.SKIPPED.built
