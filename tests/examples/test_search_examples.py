"""examples/search/: two models whose INT8 from quantize.nncf's defaults fails a worst-sample gate that a
hand-picked NNCF setting passes, the cases quantize.search is for. Each recipe runs once as written (the
float engine passes its gates; the default INT8 fails the worst-sample gate clearly: exit 3, the gate
named), then with that setting (`--set`), which passes it while most ops stay INT8.

gelu_outliers: a transformer with a few huge channels after GELU; keeping the two fc2 MatMuls in float
passes. On a CPU without VNNI the engine's u8 x s8 multiply-add also saturates (README, Performance), so
there the attention MatMuls stay in float too and `overflow_fix: enable`. fcn_sizes: a fully convolutional
network at 16, 24 and 32 pixels with a few wide channels after its stem; keeping the two convs that read the
stem in float passes, at every size. Each `<name>_search.yaml` then quantizes the same model with
quantize.search instead, in the same project and cache: it finds a setting that passes where the default fails,
and the engine built from it passes the test gate on data no stage chose by."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import REPO, Project, Ran, cpu_has_vnni, quick_timing, rows

EXAMPLES = REPO / "examples" / "search"
QUICK = quick_timing("check_fp32", "check_int8")
# The default misses its threshold by at least this much: on an AVX2 CPU the GELU example's worst cosine is
# 0.705, with AVX-512 VNNI 0.963 (8-bit products do not saturate there), both far from a 0.99 gate.
CLEARLY = 0.02

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Example:
    recipe: str
    files: tuple[str, ...]
    output: str  # the output whose worst-sample gate the default fails
    gate: str
    threshold: float
    error: str  # how check_int8's one-line error names the failure
    passing: tuple[str, ...]  # --set arguments of a setting that passes it

    @property
    def name(self) -> str:
        return Path(self.recipe).stem


FC2 = ["Gemm_27/WithoutBiases", "Gemm_47/WithoutBiases"]  # the MatMuls after GELU, as the export names them
ATTENTION = ["node_matmul", "node_matmul_1", "node_matmul_2", "node_matmul_3"]  # activation x activation
GELU = Example(
    recipe="gelu_outliers.yaml",
    files=("gelu_outliers_plugin.py",),
    output="embedding",
    gate="cosine_min",
    threshold=0.99,
    error="embedding: cosine",
    passing=(
        ("--set", f"stages.quantize.with.ignored_scope={{names: [{', '.join(FC2)}]}}")
        if cpu_has_vnni()
        else (
            "--set",
            f"stages.quantize.with.ignored_scope={{names: [{', '.join(FC2 + ATTENTION)}]}}",
            "--set",
            "stages.quantize.with.overflow_fix=enable",
        )
    ),
)
FCN = Example(
    recipe="fcn_sizes.yaml",
    files=("fcn_sizes_plugin.py",),
    output="boxes",
    gate="iou_min",
    threshold=0.9,
    error="boxes: IoU",
    passing=(
        "--set",
        "stages.quantize.with.ignored_scope={names: [node_conv2d_2/WithoutBiases, node_conv2d_8/WithoutBiases]}",
    ),
)


@dataclass(frozen=True)
class Built:
    example: Example
    project: Project
    default: Ran

    def run(self, *args: str) -> Ran:
        return self.project.run_json(self.example.recipe, *QUICK, *args, timeout=900)


@pytest.fixture(scope="module", params=[GELU, FCN], ids=lambda e: e.name)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The example copied to its own project (and cache) and run once as written."""
    example: Example = request.param
    project = Project.copy(tmp_path_factory.mktemp(example.name), example.recipe, *example.files, source=EXAMPLES)
    proc, record = project.run_json(example.recipe, *QUICK, timeout=900)
    return Built(example, project, (proc, record))


def why(proc: object, record: dict) -> str:
    """What a failed assertion shows: each stage's status (and error), then the end of stderr."""
    stages = [f"{s['stage']}: {s['status']} {s.get('error') or ''}" for s in record.get("stages", [])]
    return "\n".join(stages) + "\n" + getattr(proc, "stderr", "")[-3000:]


def gates_of(row: dict) -> dict[tuple[str, str], dict]:
    """A validate stage's gates by (output, metric): its published report, or the one a failed gate kept."""
    folder = Path(row["kept"]) if row.get("kept") else Path(row["outputs"]["report"]).parent
    return {(g["output"], g["metric"]): g for g in json.loads((folder / "report.json").read_text())["gates"]}


def test_the_default_int8_fails_the_worst_sample_gate_clearly(built: Built) -> None:
    e, (proc, record) = built.example, built.default
    assert proc.returncode == 3, why(proc, record)
    r = rows(record)
    assert r["check_fp32"]["status"] == "ran"  # the float engine is fine: the INT8 is what fails
    assert r["check_int8"]["status"] == "gate failed" and e.error in r["check_int8"]["error"]
    gates = gates_of(r["check_int8"])
    assert [key for key, g in gates.items() if not g["passed"]] == [(e.output, e.gate)]
    assert gates[(e.output, e.gate)]["observed"] < e.threshold - CLEARLY
    assert r["quantize"]["summary"]["int8_ops"] > 0


def test_the_outliers_are_in_the_weights(built: Built) -> None:
    summary = rows(built.default[1])["train"]["summary"]
    if built.example is GELU:
        assert summary["held_out_accuracy"] >= 0.9
        assert summary["outlier_ratio"] >= 500  # the GELU channels that dwarf the rest
    else:
        assert len(summary["wide_channels"]) == 2
        assert min(v for k, v in summary.items() if k.startswith("held_out_iou_")) >= 0.8


def test_a_hand_setting_passes_the_gate_with_most_ops_in_int8(built: Built) -> None:
    e = built.example
    proc, record = built.run(*e.passing)
    assert proc.returncode == 0, why(proc, record)
    r = rows(record)
    assert r["train"]["status"] == "cached" and r["check_fp32"]["status"] == "cached", why(proc, record)
    gate = gates_of(r["check_int8"])[(e.output, e.gate)]
    assert gate["passed"] and gate["observed"] >= e.threshold
    default_ops = rows(built.default[1])["quantize"]["summary"]["int8_ops"]
    assert r["quantize"]["summary"]["int8_ops"] > default_ops / 2


SEARCH_QUICK = ["--set", "stages.search.with.repeats=2", "--set", "stages.search.with.min_seconds=0.1"]


def test_quantize_search_passes_the_gate_the_default_fails(built: Built) -> None:
    e = built.example
    recipe = e.recipe.replace(".yaml", "_search.yaml")
    shutil.copy(EXAMPLES / recipe, built.project.root / recipe)
    proc, record = built.project.run_json(recipe, *SEARCH_QUICK, *quick_timing("check_int8"), timeout=1200)
    if e is GELU and cpu_has_vnni():
        # With VNNI the default misses by less (0.963) and the passing settings barely pass the tuning digits;
        # which one is chosen depends on measured latency (the fastest passing). Preset mixed fails the held-out
        # digits (0.987): the search refuses it; a choice that passes them fails check_int8 on the test digits.
        # Either way nothing ships past a failed gate.
        assert proc.returncode == 3, why(proc, record)
        r = rows(record)
        if r["search"]["status"] == "gate failed":
            assert r["openvino_int8"]["status"] == "not run", why(proc, record)
            assert "fails on the held-out samples: embedding: cosine" in r["search"]["error"]
        else:
            assert r["search"]["status"] == "ran" and r["check_int8"]["status"] == "gate failed", why(proc, record)
            assert e.error in r["check_int8"]["error"]
        return
    assert proc.returncode == 0, why(proc, record)
    r = rows(record)
    assert r["train"]["status"] == "cached"  # the same model as the default recipe's, from the same cache
    report = json.loads(Path(r["search"]["outputs"]["report"]).read_text())
    default = {(g["output"], g["gate"]): g for g in report["default"]["search"]}[(e.output, e.gate)]
    assert not default["passed"] and report["trials"][0]["describe"] == "quantize.nncf default"
    chosen = report["chosen"]
    assert chosen is not None and chosen["holdout_passed"] and all(g["passed"] for g in chosen["search"])
    assert r["search"]["trials"]["computed"] + r["search"]["trials"]["cached"] >= 2
    gate = gates_of(r["check_int8"])[(e.output, e.gate)]
    assert gate["passed"], why(proc, record)
