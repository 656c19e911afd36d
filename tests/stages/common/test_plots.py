"""The SVG plots: the same data gives the same bytes (here, in a fresh interpreter with another hash seed and a
matplotlibrc of its own), thresholds are drawn and labelled, nothing global changes, and matplotlib brings no
browser with it."""

from __future__ import annotations

import html
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
from harness import REPO
from packaging.requirements import Requirement

from stages.common.plots import Panel, Series, Trial, errors_svg, gate_text, latency_svg, pareto_svg

PANELS = [
    Panel("logits", "cosine", [0.99991, 0.99995, float("nan"), 0.99999, 1.0], "min", 0.9999, "cosine_min", True),
    Panel("logits", "rel_error", [2e-3, 5e-4, 1e-4, 3e-4, 8e-4], "max", 1e-3, "rel_error_max", False, [4, 3, 2, 1, 0]),
    Panel("emb", "centered_cosine", [0.5, 0.7]),  # ungated: no line
]
SERIES = [
    Series("candidate", [1, 8], [0.5, 2.0], [0.4, 1.8], [0.7, 2.5]),
    Series("reference", [1], [0.9], [0.8], [1.2]),
]
TRIALS: list = [
    Trial(1.0, 0.99, True, "mixed", 0.9, 1.2),
    {"latency_ms": 0.6, "figure": 0.93, "passed": False, "label": "int8-all", "seed": 3},  # a search's own key too
    {"latency_ms": 0.8, "figure": 0.97, "passed": True, "label": "int8-skip-head"},
]

# Draws the three plots into argv[1], the same data as this module's (a fresh interpreter has none of its state).
SCRIPT = f"""
import sys
from pathlib import Path
sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(REPO / "tests")!r}]
import test_plots as t
t.draw_all(Path(sys.argv[1]))
"""


def draw_all(folder: Path) -> dict[str, bytes]:
    errors_svg(folder / "errors.svg", PANELS, title="validate: per-sample figures")
    latency_svg(folder / "latency.svg", SERIES)
    pareto_svg(folder / "pareto.svg", TRIALS, "cosine (worst sample)", 0.95, "int8-skip-head")
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.svg"))}


def text_of(svg: bytes) -> str:
    return html.unescape(svg.decode())


def test_the_same_data_gives_the_same_bytes(tmp_path: Path) -> None:
    first, second = draw_all(tmp_path / "a"), draw_all(tmp_path / "b")
    assert list(first) == ["errors.svg", "latency.svg", "pareto.svg"] and first == second
    for svg in first.values():
        assert svg.startswith(b"<?xml") and b"<dc:date>" not in svg and b"Matplotlib v" not in svg


def test_a_fresh_interpreter_with_another_hash_seed_and_its_own_matplotlibrc_draws_the_same_bytes(
    tmp_path: Path,
) -> None:
    here = draw_all(tmp_path / "here")
    config = tmp_path / "mplconfig"
    config.mkdir()
    (config / "matplotlibrc").write_text("lines.linewidth: 7\nsvg.fonttype: path\nfont.size: 20\naxes.grid: False\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "MPLCONFIGDIR": str(config), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "there")], env=env, check=True)
    there = {p.name: p.read_bytes() for p in sorted((tmp_path / "there").glob("*.svg"))}
    assert there == here


def test_thresholds_are_drawn_and_labelled_and_the_worst_sample_named(tmp_path: Path) -> None:
    svg = draw_all(tmp_path)
    errors = text_of(svg["errors.svg"])
    assert gate_text("cosine_min", "min", 0.9999) == "cosine_min >= 0.9999"
    assert "cosine_min >= 0.9999" in errors and "rel_error_max <= 0.001" in errors
    assert "logits: cosine (PASS), 5 samples, 1 not finite" in errors and "logits: rel_error (FAIL)" in errors
    assert "worst: sample 0 = 0.99991" in errors  # the lowest cosine
    assert "worst: sample 4 = 0.002" in errors  # the highest error, named by its sample index
    assert "emb: centered_cosine, 2 samples" in errors and "emb: centered_cosine (" not in errors
    latency = text_of(svg["latency.svg"])
    assert all(f"{who} {what}" in latency for who in ("candidate", "reference") for what in ("p50", "p5-p95"))
    pareto = text_of(svg["pareto.svg"])
    assert "gate 0.95" in pareto and "chosen: int8-skip-head" in pareto
    assert "passed (2)" in pareto and "failed (1)" in pareto and "int8-all" in pareto


def test_nothing_to_draw_still_writes_a_plot(tmp_path: Path) -> None:
    errors_svg(tmp_path / "errors.svg", [])
    latency_svg(tmp_path / "latency.svg", [])
    pareto_svg(tmp_path / "pareto.svg", [], "cosine", None, None)
    assert "no per-sample figures" in text_of((tmp_path / "errors.svg").read_bytes())
    assert "nothing timed" in text_of((tmp_path / "latency.svg").read_bytes())
    assert (tmp_path / "pareto.svg").read_bytes().startswith(b"<?xml")


def test_drawing_leaves_the_callers_matplotlib_alone(tmp_path: Path) -> None:
    with matplotlib.rc_context({"lines.linewidth": 9.0, "svg.hashsalt": None}):
        before = dict(matplotlib.rcParams)
        draw_all(tmp_path)
        assert dict(matplotlib.rcParams) == before
    probe = "import stages.common.plots, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"  # imported when drawing, never with the module
    probe = f"{SCRIPT}\nprint(sorted(m for m in ('matplotlib.pyplot', 'tkinter') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "fresh")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]"  # no pyplot, no GUI toolkit


def test_trials_as_dicts_or_dataclasses_draw_alike(tmp_path: Path) -> None:
    as_dicts = [
        {
            "latency_ms": 1.0,
            "figure": 0.99,
            "passed": True,
            "label": "mixed",
            "latency_low_ms": 0.9,
            "latency_high_ms": 1.2,
        }
    ] + TRIALS[1:]
    pareto_svg(tmp_path / "a.svg", TRIALS, "cosine", 0.95, "mixed")
    pareto_svg(tmp_path / "b.svg", as_dicts, "cosine", 0.95, "mixed")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    with pytest.raises(ValueError, match="a trial needs label"):
        pareto_svg(tmp_path / "c.svg", [{"latency_ms": 1.0, "figure": 0.99, "passed": True}], "cosine", 0.95, None)


def _dependency_tree(root: str) -> set[str]:
    """The installed distributions `root` requires, transitively (extras left out: they are not installed)."""
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for spec in importlib.metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_matplotlib_brings_no_browser() -> None:
    tree = _dependency_tree("matplotlib")
    assert {"matplotlib", "numpy", "pillow"} <= tree
    browsers = {"kaleido", "plotly", "selenium", "playwright", "pyppeteer", "choreographer", "bokeh"}
    assert tree & browsers == set(), json.dumps(sorted(tree))
