"""The stage graph: networkx's selection and order, remembered by structure and checked before reuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import TOY

from pipeline.errors import PipelineError
from pipeline.recipe.graph import CycleError, build_graph, order_of, select, stage_graph
from pipeline.recipe.load import load_recipe

DIAMOND = (
    "plugins: [toystages]\nstages:\n"
    "  other: {uses: toy.write, with: {text: x}}\n"
    "  join: {uses: toy.join, inputs: {a: upper, b: other}}\n"
    "  write: {uses: toy.write}\n"
    "  upper: {uses: toy.upper, from: write}\n"
    "  lone: {uses: toy.write}\n"
)


@pytest.fixture(autouse=True)
def toy_on_path(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TOY))


def _load(tmp_path: Path, text: str = DIAMOND):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return load_recipe(p)


def _memos(memo_dir: Path) -> list[Path]:
    return sorted(memo_dir.glob("graph-*.json"))


def test_order_and_parents_follow_references_ties_broken_by_recipe_order(tmp_path: Path) -> None:
    g = stage_graph(_load(tmp_path))
    assert g.order == ("other", "write", "upper", "join", "lone")
    assert g.parents["join"] == ("upper", "other") and g.parents["upper"] == ("write",) and g.parents["lone"] == ()


def test_targets_select_them_and_their_ancestors_only(tmp_path: Path) -> None:
    recipe = _load(tmp_path)
    assert stage_graph(recipe, ["upper"]).order == ("write", "upper")
    assert stage_graph(recipe, ["lone", "upper"]).order == ("write", "upper", "lone")
    with pytest.raises(PipelineError, match="no stage 'uper' in the recipe.*upper"):
        stage_graph(recipe, ["uper"])


def test_remembered_order_equals_networkx_and_is_reused(tmp_path: Path, monkeypatch) -> None:
    recipe, memo_dir = _load(tmp_path), tmp_path / "graphs"
    memo_dir.mkdir()
    first = stage_graph(recipe, ["join"], memo_dir)
    first.remember()
    assert first.order == tuple(order_of(select(build_graph(recipe), ["join"])))
    assert len(_memos(memo_dir)) == 1

    import pipeline.recipe.graph as graph_module

    def no_networkx(*_):
        raise AssertionError("networkx consulted although the structure is unchanged")

    monkeypatch.setattr(graph_module, "build_graph", no_networkx)
    again = stage_graph(recipe, ["join"], memo_dir)
    assert (again.order, again.parents, again.memo) == (first.order, first.parents, None)


def test_a_structure_change_is_a_miss(tmp_path: Path) -> None:
    memo_dir = tmp_path / "graphs"
    memo_dir.mkdir()
    stage_graph(_load(tmp_path), [], memo_dir).remember()
    rewired = DIAMOND.replace("inputs: {a: upper, b: other}", "inputs: {a: lone, b: other}")
    g = stage_graph(_load(tmp_path, rewired), [], memo_dir)
    g.remember()
    assert g.parents["join"] == ("lone", "other") and g.order.index("lone") < g.order.index("join")
    assert len(_memos(memo_dir)) == 2


def test_params_do_not_change_the_structure(tmp_path: Path) -> None:
    memo_dir = tmp_path / "graphs"
    memo_dir.mkdir()
    stage_graph(_load(tmp_path), [], memo_dir).remember()
    stage_graph(_load(tmp_path, DIAMOND.replace("text: x", "text: y")), [], memo_dir).remember()
    assert len(_memos(memo_dir)) == 1


@pytest.mark.parametrize(
    "damage",
    [
        "not json",
        json.dumps({"a": 1}),
        json.dumps(["join", "other", "write", "upper", "lone"]),  # parents after
        json.dumps(["other", "write", "upper", "join"]),  # a stage missing
        json.dumps(["other", "write", "upper", "join", "lone", "lone"]),  # duplicate
        json.dumps(["other", "write", "upper", "join", "lone", "ghost"]),  # not in the recipe
    ],
)
def test_a_damaged_memo_is_a_miss_and_is_repaired(tmp_path: Path, damage: str) -> None:
    recipe, memo_dir = _load(tmp_path), tmp_path / "graphs"
    memo_dir.mkdir()
    expected = stage_graph(recipe, [], memo_dir)
    expected.remember()
    (memo,) = _memos(memo_dir)
    memo.write_text(damage)
    repaired = stage_graph(recipe, [], memo_dir)
    assert (repaired.order, repaired.parents) == (expected.order, expected.parents)
    repaired.remember()
    assert json.loads(memo.read_text()) == list(expected.order)


def test_a_memo_with_an_extra_stage_is_not_used_for_a_selection(tmp_path: Path) -> None:
    recipe, memo_dir = _load(tmp_path), tmp_path / "graphs"
    memo_dir.mkdir()
    stage_graph(recipe, ["upper"], memo_dir).remember()
    (memo,) = _memos(memo_dir)
    memo.write_text(json.dumps(["write", "upper", "lone"]))  # topological, but lone is not needed
    assert stage_graph(recipe, ["upper"], memo_dir).order == ("write", "upper")


def test_a_cycle_is_rejected_and_never_remembered(tmp_path: Path) -> None:
    memo_dir = tmp_path / "graphs"
    memo_dir.mkdir()
    cyclic = "plugins: [toystages]\nstages:\n  a: {uses: toy.upper, from: b}\n  b: {uses: toy.upper, from: a}\n"
    with pytest.raises(CycleError, match="cycle: a -> b -> a"):
        stage_graph(_load(tmp_path, cyclic), [], memo_dir)
    assert _memos(memo_dir) == []


def test_a_cached_rerun_imports_no_networkx(tmp_path: Path) -> None:
    """The point of the memo: a fully cached run never pays networkx's import."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(DIAMOND)
    probe = (
        "import sys\nfrom pipeline.cli.main import main\n"
        "code = main(sys.argv[1:])\nprint('EXIT', code, 'networkx' in sys.modules)"
    )
    run = [sys.executable, "-c", probe, "run", str(recipe), "--cache-dir", str(tmp_path / "cache"), "-q"]
    env = {**os.environ, "PYTHONPATH": str(TOY)}
    first = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert first.stdout.splitlines()[-1] == "EXIT 0 True", first.stderr
    again = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.stdout.splitlines()[-1] == "EXIT 0 False", again.stderr
