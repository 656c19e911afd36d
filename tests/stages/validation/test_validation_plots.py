"""validate's plots: plots/errors.svg always, plots/latency.svg when timed, drawn from the numbers report.json
keeps (drawing them again from report.json gives the same bytes), embedded in report.md by links that resolve
beside it (in the stage's folder and in its view), and a cached run imports no matplotlib."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from graphs import classifier, save, score_model
from harness import Project, run_stage
from onnx import numpy_helper

from pipeline.errors import GateFailed
from pipeline.stage import DatasetInput
from stages.common.plots import gate_text
from stages.validate import Validate
from stages.validation.plots import draw

SPEC = {"tensors": {"input": {"shape": ["batch", 3, 8, 8]}}, "dims": {"batch": {"min": 1, "opt": 4, "max": 16}}}
QUICK = {"latency": False, "throughput_batches": []}
TIMED = {"min_seconds": 0.05, "warmup": 1, "throughput_batches": [1, 4], "time_reference": True}
GATES = {"cosine_min": 0.99, "centered_cosine_min": 0.99, "rel_error_max": 0.5}


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return save(classifier(), tmp_path / "ref" / "model.onnx")


@pytest.fixture
def data(tmp_path: Path) -> DatasetInput:
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "val.npz", input=rng.standard_normal((24, 3, 8, 8)).astype(np.float32))
    return DatasetInput("val", {"kind": "npz", "path": "val.npz"}, tmp_path)


def perturbed(reference: Path, path: Path, delta: float) -> Path:
    model = onnx.load(reference)
    for init in model.graph.initializer:
        if init.name == "gw":
            w = numpy_helper.to_array(init).copy()
            w[3, 17] += delta
            init.CopyFrom(numpy_helper.from_array(w, "gw"))
    return save(model, path)


def validate(out: Path, candidate: Path, reference: Path, data: DatasetInput, spec: dict = SPEC, **params: Any) -> None:
    run_stage(Validate, out, params, inputs={"candidate": candidate, "reference": reference, "data": data}, model=spec)


def svg_text(path: Path) -> str:
    return html.unescape(path.read_text())


def embedded(md: Path) -> list[str]:
    """The images report.md embeds, as written."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.read_text())


def test_validate_draws_its_plots_from_the_numbers_in_report_json(
    tmp_path: Path, reference: Path, data: DatasetInput
) -> None:
    out = tmp_path / "out"
    validate(out, perturbed(reference, tmp_path / "cand.onnx", 0.05), reference, data, gates=GATES, **TIMED)
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["errors.svg", "latency.svg"]
    r = json.loads((out / "report.json").read_text())
    section, entry = r["plots"], r["outputs"]["logits"]
    assert "per_sample" not in entry  # moved to the plots section
    errors = section["errors"]
    assert errors["file"] == "plots/errors.svg" and errors["gated"] is True
    assert sorted(errors["outputs"]["logits"]) == ["centered_cosine", "cosine", "rel_error"]
    gates = {g["metric"]: g for g in r["gates"]}
    drawn = svg_text(out / "plots" / "errors.svg")
    for figure, panel in errors["outputs"]["logits"].items():
        gate = gates[panel["gate"]]
        assert panel["threshold"] == gate["threshold"] == GATES[panel["gate"]] and panel["passed"] == gate["passed"]
        assert panel["samples"] == list(range(24)) and len(panel["values"]) == 24
        worst = min(panel["values"]) if panel["direction"] == "min" else max(panel["values"])
        assert worst == entry["figures"][figure] == gate["observed"]  # the worst sample is what the gate read
        assert gate_text(panel["gate"], panel["direction"], panel["threshold"]) in drawn  # the gate line's label
    latency = section["latency"]
    assert latency["file"] == "plots/latency.svg" and sorted(latency["engines"]) == ["candidate", "reference"]
    for who, points in latency["engines"].items():
        timings = {(t["mode"], t["batch"]): t for t in r["timing"][who]}
        assert [p["batch"] for p in points] == [1, 4]
        one, four = timings[("latency", 1)], timings[("throughput", 4)]  # at batch 1, latency mode: one request
        for point, t in zip(points, (one, four)):
            assert point["mode"] == t["mode"] and all(point[k] == t[k] for k in ("p5_ms", "p50_ms", "p95_ms"))
            assert point["p5_ms"] <= point["p50_ms"] <= point["p95_ms"]
    # report.json alone draws the same bytes: what it says is what the plots show
    again = tmp_path / "again"
    drawn_files = draw(json.loads((out / "report.json").read_text())["plots"], again, r["stage"])
    assert [p.relative_to(again).as_posix() for p in drawn_files] == ["plots/errors.svg", "plots/latency.svg"]
    for p in drawn_files:
        assert p.read_bytes() == (out / p.relative_to(again)).read_bytes()
    links = embedded(out / "report.md")
    assert links == ["plots/errors.svg", "plots/latency.svg"] and all((out / link).is_file() for link in links)


def test_untimed_and_no_per_sample_gate_draws_every_per_sample_figure_ungated(
    tmp_path: Path, reference: Path, data: DatasetInput
) -> None:
    out = tmp_path / "out"
    validate(out, reference, reference, data, gates={"max_abs": 1.0}, **QUICK)
    assert [p.name for p in (out / "plots").iterdir()] == ["errors.svg"]
    section = json.loads((out / "report.json").read_text())["plots"]
    assert section["latency"] is None and section["errors"]["gated"] is False
    panels = section["errors"]["outputs"]["logits"]
    assert sorted(panels) == ["centered_cosine", "cosine", "rel_error"]
    assert all(p["threshold"] is None and p["gate"] is None for p in panels.values())
    assert "no per-sample gate" in svg_text(out / "plots" / "errors.svg")
    assert embedded(out / "report.md") == ["plots/errors.svg"]


def test_a_failed_gate_still_draws_its_plots(tmp_path: Path, reference: Path, data: DatasetInput) -> None:
    out = tmp_path / "out"
    with pytest.raises(GateFailed):
        validate(out, perturbed(reference, tmp_path / "bad.onnx", 3.0), reference, data, gates=GATES, **QUICK)
    panel = json.loads((out / "report.json").read_text())["plots"]["errors"]["outputs"]["logits"]["centered_cosine"]
    assert panel["passed"] is False
    assert "logits: centered_cosine (FAIL)" in svg_text(out / "plots" / "errors.svg")


def test_an_output_with_only_dataset_level_figures_still_gets_its_errors_plot(tmp_path: Path) -> None:
    (tmp_path / "vecdata.py").write_text(
        "import numpy as np\n\ndef vecs(n=40):\n"
        "    yield {'x': np.random.default_rng(5).standard_normal((n, 4)).astype(np.float32)}, None\n"
    )
    data = DatasetInput("val", {"kind": "python", "python": "vecdata.py:vecs"}, tmp_path)
    ref = save(score_model(), tmp_path / "ref.onnx")
    spec = {"tensors": {"x": {"shape": ["batch", 4]}}, "dims": {"batch": {"min": 1, "opt": 8, "max": 32}}}
    validate(tmp_path / "out", ref, ref, data, spec, **QUICK)
    section = json.loads((tmp_path / "out" / "report.json").read_text())["plots"]
    assert section["errors"]["outputs"] == {}  # a (batch, 1) score: its figures are one number each
    assert "no per-sample figures" in svg_text(tmp_path / "out" / "plots" / "errors.svg")


RECIPE = """\
name: plotted
model:
  tensors: {input: {shape: [batch, 3, 8, 8]}}
  dims: {batch: {min: 1, opt: 4, max: 16}}
data:
  val: {kind: npz, path: val.npz}
stages:
  check:
    uses: validate
    inputs: {candidate: model.onnx, reference: model.onnx, data: data.val}
    with: {throughput_batches: [1], min_seconds: 0.05, warmup: 1}
"""


def test_the_view_and_the_summary_embed_the_plots_and_a_cached_run_imports_no_matplotlib(tmp_path: Path) -> None:
    project = Project.at(tmp_path)
    save(classifier(), project.root / "model.onnx")
    rng = np.random.default_rng(1)
    np.savez(project.root / "val.npz", input=rng.standard_normal((12, 3, 8, 8)).astype(np.float32))
    project.write_recipe(RECIPE, "plotted.yaml")
    proc = project.cli("run", "plotted.yaml", "-q", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    view = project.cache / "plotted" / "check"  # artifacts/<recipe>/<stage>/: report.md beside plots/
    links = embedded(view / "report.md")
    assert links == ["plots/errors.svg", "plots/latency.svg"] and all((view / link).is_file() for link in links)
    probe = (
        "import sys\nfrom pipeline.cli.main import main\nrc = main(['run', 'plotted.yaml', '-q'])\n"
        "print(rc, sorted(m for m in ('matplotlib', 'onnxruntime', 'openvino') if m in sys.modules))"
    )
    env = project.env()
    out = subprocess.run([sys.executable, "-c", probe], cwd=project.root, env=env, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr  # cached: validate never ran
    # `pipeline summary --output FILE`: report.md's plots linked from FILE's folder to the view
    doc = tmp_path / "ci" / "summary.md"
    doc.parent.mkdir()
    proc = project.cli("summary", "plotted.yaml", "--output", str(doc))
    assert proc.returncode == 0, proc.stderr
    links = embedded(doc)
    assert [Path(link).name for link in links] == ["errors.svg", "latency.svg"]
    assert all((doc.parent / link).read_bytes() == (view / "plots" / Path(link).name).read_bytes() for link in links)
