"""quantize.search on a model built here whose GELU outliers break the default INT8: the default first, the choice
passing every gate on the search and the held-out samples, its float operations as patterns, its IR built by
build.openvino; no passing trial fails the stage (exit 3) naming the nearest; trials are cached results (a search
killed after its first trial resumes without recomputing it, an identical rerun is a pure cache hit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from graphs import GELU_SPEC, gelu_mlp, save
from harness import Project, run_stage

from pipeline.errors import GateFailed
from pipeline.stage import DatasetInput

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from stages.quantize_search import QuantizeSearch  # noqa: E402

# Small and quick: one timing pair per trial, only the float-op search and the overflow fix in the space.
FAST = {"repeats": 2, "min_seconds": 0.05, "max_trials": 8}
SPACE = {"preset": ["performance"], "smooth_quant_alpha": [], "bias_correction": ["fast"]}
GATES = {"gates": {}, "per_output": {"embedding": {"cosine_min": 0.9}}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("search")
    save(gelu_mlp(), root / "model.onnx")
    rng = np.random.default_rng(0)
    np.savez(root / "calib.npz", x=rng.standard_normal((200, 16)).astype(np.float32))
    np.savez(root / "val.npz", x=rng.standard_normal((200, 16)).astype(np.float32))
    return root


def _inputs(root: Path) -> dict:
    return {
        "model": root / "model.onnx",
        "data": DatasetInput("calib", {"kind": "npz", "path": "calib.npz"}, root),
        "val": DatasetInput("val", {"kind": "npz", "path": "val.npz"}, root),
    }


def test_search_passes_the_gate_the_default_fails(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run_stage(QuantizeSearch, out, {**GATES, **FAST, "space": SPACE}, _inputs(folder), GELU_SPEC)
    report = json.loads((out / "report.json").read_text())
    trials = report["trials"]
    assert trials[0]["describe"] == "quantize.nncf default" and trials[0]["why"] == "quantize.nncf's default setting"
    default_cos = next(g for g in report["default"]["search"] if g["gate"] == "cosine_min")
    assert not default_cos["passed"] and default_cos["observed"] < 0.9
    chosen = report["chosen"]
    assert chosen is not None and summary["chosen"].startswith(f"#{chosen['index']}")
    assert all(g["passed"] for g in chosen["search"]) and chosen["holdout_passed"]
    assert report["samples"] == {"search": 150, "holdout": 50}
    picked = trials[chosen["index"]]
    assert picked["passed"] and picked["int8_ops"] > 0
    assert "fc2" in chosen["float_op_names"] or "embedding" in chosen["float_op_names"]
    assert chosen["ignored_scope"] and set(chosen["ignored_scope"]) <= {"types", "patterns"}
    for t in trials:  # every trial: its setting, gate figures with pass/fail, latency with its interval
        assert t["latency"]["low_ms"] <= t["latency"]["ms"] <= t["latency"]["high_ms"]
        assert {g["gate"] for g in t["gates"]} >= {"cosine_min", "finite", "shape"}
    assert (out / "model" / "model.xml").is_file() and (out / "plots" / "pareto.svg").is_file()
    md = (out / "report.md").read_text()
    assert "![pareto](plots/pareto.svg)" in md and "| cosine_min on embedding (threshold 0.9) |" in md
    assert report["pareto"]["threshold"] == 0.9 and len(report["pareto"]["points"]) == len(trials)
    ranking = report["rankings"][0]  # the groups the float-op moves were drawn from, by tail margin
    assert ranking["of"] and set(ranking["tail_margins"]) >= set(chosen["float_op_names"])


def test_no_passing_trial_fails_with_the_nearest_and_keeps_the_report(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    params = {
        "gates": {},
        "per_output": {"embedding": {"cosine_min": 0.99999}},
        **FAST,
        "max_trials": 2,
        "objective": "throughput",
        "throughput_batch": 4,
    }
    with pytest.raises(GateFailed, match=r"no trial of 2 passes every gate; nearest:; trial \d"):
        run_stage(QuantizeSearch, out, {**params, "space": SPACE}, _inputs(folder), GELU_SPEC)
    report = json.loads((out / "report.json").read_text())
    assert report["chosen"] is None and report["nearest"][0].startswith("no trial of 2")
    assert report["budget"]["stopped"] == "max_trials 2 reached"
    assert not (out / "model").exists()  # there is no best to ship
    assert report["objective"] == {**report["objective"], "kind": "throughput", "batch": 4, "unit": "ms per sample"}
    assert all(t["latency"]["ms"] > 0 for t in report["trials"])


def test_bad_gates_are_recipe_errors() -> None:
    with pytest.raises(ValueError, match="unknown gate"):
        QuantizeSearch.Params.model_validate({"gates": {"cosine_mn": 0.9}})
    with pytest.raises(ValueError, match="space"):
        QuantizeSearch.Params.model_validate({"space": {"presets": ["mixed"]}})
    with pytest.raises(ValueError, match="leave none to search on"):
        QuantizeSearch.Params.model_validate({"holdout_every": 1})


def test_an_accuracy_gate_on_data_without_labels_fails_before_any_trial(folder: Path, tmp_path: Path) -> None:
    params = {"gates": {"accuracy_drop_max": 0.01}, **FAST, "space": SPACE}
    with pytest.raises(ValueError, match="gates accuracy_drop_max need labels, and data.val has none"):
        run_stage(QuantizeSearch, tmp_path / "out", params, _inputs(folder), GELU_SPEC)


RECIPE = {
    "name": "searchy",
    "model": GELU_SPEC,
    "data": {"calib": {"kind": "npz", "path": "calib.npz"}, "val": {"kind": "npz", "path": "val.npz"}},
    "stages": {
        "search": {
            "uses": "quantize.search",
            "inputs": {"model": "model.onnx", "data": "data.calib", "val": "data.val"},
            "with": {**GATES, **FAST, "space": SPACE},
        },
        "engine": {"uses": "build.openvino", "from": "search", "with": {"inference_precision": "f32"}},
    },
}


def test_trials_resume_after_a_kill_and_an_identical_rerun_is_a_cache_hit(folder: Path, tmp_path: Path) -> None:
    project = Project.at(tmp_path / "p")
    for name in ("model.onnx", "calib.npz", "val.npz"):
        (project.root / name).write_bytes((folder / name).read_bytes())
    project.write_recipe(yaml.safe_dump(RECIPE, sort_keys=False), "search.yaml")

    killed = project.cli("run", "search.yaml", env={"PIPELINE_FAULT": "trial:search"}, timeout=300)
    assert killed.returncode != 0 and "killed by signal 9" in killed.stderr
    assert len(list((project.cache / "trials").glob("*/*.json"))) == 1  # the first trial, stored whole

    proc, record = project.run_json("search.yaml", timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {s["stage"]: s for s in record["stages"]}
    search = rows["search"]
    first, *rest = search["trials"]["list"]
    assert first["cached"] is True and search["trials"]["computed"] >= 1
    assert first["key"] not in {t["key"] for t in rest if not t["cached"]}  # never computed again
    assert rows["engine"]["status"] == "ran"  # build.openvino takes the chosen IR as it takes quantize.nncf's
    report = json.loads((project.cache / "searchy" / "search" / "report.json").read_text())
    assert report["trials"][0]["cached"] is True and report["chosen"] is not None

    again, rerun = project.run_json("search.yaml", timeout=300)
    assert again.returncode == 0 and {s["stage"]: s["status"] for s in rerun["stages"]} == {
        "search": "cached",
        "engine": "cached",
    }
    # A tighter budget reruns the stage, and every trial it asks for comes from the cache.
    project.write_recipe(
        yaml.safe_dump({**RECIPE, "stages": {"search": _with(RECIPE, max_trials=2)}}, sort_keys=False), "search.yaml"
    )
    fewer, smaller = project.run_json("search.yaml", timeout=300)
    row = next(s for s in smaller["stages"] if s["stage"] == "search")
    assert row["trials"]["computed"] == 0 or fewer.returncode == 3
    assert row["trials"]["cached"] >= 2


def _with(recipe: dict, **changes: object) -> dict:
    stage = dict(recipe["stages"]["search"])
    stage["with"] = {**stage["with"], **changes}
    return stage
