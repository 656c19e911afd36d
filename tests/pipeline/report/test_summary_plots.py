"""`pipeline summary` links the plots a stage wrote, whatever its kind: links in its Markdown to its own files
point at its view from where the summary is read, and `.svg` outputs it does not embed follow its section."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from harness import Project

from pipeline.report.markdown import summarize

KINDS = '''
from pipeline.stage import OutputSpec, Stage, StageContext


class Plotter(Stage):
    """Writes a report that embeds one of its plots, links its data and a web page; two plots it leaves out."""

    kind = "plot.maker"
    outputs = {
        "markdown": OutputSpec("report.md"),
        "data": OutputSpec("data.json"),
        "figures": OutputSpec("figs", is_dir=True),
        "overview": OutputSpec("overview.svg"),
    }

    def run(self, ctx: StageContext) -> dict:
        figs = ctx.output("figures")
        (figs / "deep").mkdir(parents=True)
        (figs / "a.svg").write_text("<svg>a</svg>")
        (figs / "deep" / "b.svg").write_text("<svg>b</svg>")
        ctx.output("overview").write_text("<svg>overview</svg>")
        ctx.output("data").write_text("{}")
        ctx.output("markdown").write_text(
            "# Plots\\n\\n![a](figs/a.svg)\\n\\n[the data](data.json \\"raw\\"), "
            "[elsewhere](https://example.org/x.svg), [missing](figs/none.svg), [anchor](#plots)\\n"
        )
        return {}
'''

RECIPE = """\
name: plotted
plugins: [toystages, plotkinds]
stages:
  write: {uses: toy.write}
  plots: {uses: plot.maker}
"""


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)", text)


def test_a_stages_own_files_are_linked_at_its_view_and_unembedded_plots_follow(toy: Project, tmp_path: Path) -> None:
    (toy.root / "plotkinds.py").write_text(KINDS)
    recipe = toy.load(RECIPE)
    result, _ = toy.run(recipe)
    assert toy.statuses(result) == {"write": "ran", "plots": "ran"}
    view = toy.cache / "plotted" / "plots"
    shutil.rmtree(view)  # summary brings the view back, as `pipeline show` does
    base = tmp_path / "ci" / "summary"
    base.mkdir(parents=True)
    summary = summarize(recipe, toy.store, toy.plan(recipe).values(), base=base)
    assert summary.warnings == () and summary.complete
    sections = dict(summary.sections)
    report = sections["## plots (plot.maker)"]
    links = _links(report)
    assert links[0] == "../../cache/plotted/plots/figs/a.svg" and links[1] == "../../cache/plotted/plots/data.json"
    assert '"raw")' in report  # the title stays
    assert links[2:] == ["https://example.org/x.svg", "figs/none.svg", "#plots"]  # not the stage's files: as written
    gallery = sections["## plots (plot.maker): plots"]
    assert gallery == (
        "![figs/deep/b.svg](../../cache/plotted/plots/figs/deep/b.svg)\n\n"
        "![overview.svg](../../cache/plotted/plots/overview.svg)"
    )
    for link in _links(report)[:2] + _links(gallery):
        assert (base / link).resolve().is_file(), link
    assert (base / links[0]).read_text() == "<svg>a</svg>"
    assert list(sections) == ["## plots (plot.maker)", "## plots (plot.maker): plots"]  # toy.write has no Markdown


def test_links_are_relative_to_the_working_directory_by_default(toy: Project) -> None:
    (toy.root / "plotkinds.py").write_text(KINDS)
    recipe = toy.load(RECIPE)
    toy.run(recipe)
    summary = summarize(recipe, toy.store, toy.plan(recipe).values(), stages=["plots"])
    text = summary.markdown()
    assert "](../cache/plotted/plots/figs/a.svg)" in text  # the project's folder is the working directory
    assert "![overview.svg](../cache/plotted/plots/overview.svg)" in text
