"""`pipeline summary`: the Markdown outputs of a recipe's up-to-date stages as one document, through the real CLI."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from harness import Project

from pipeline.report.markdown import demote_headings

RECIPE = """\
name: summ
plugins: [toystages]
stages:
  write: {uses: toy.write, with: {text: "abc\\n"}}
  report: {uses: toy.report, from: write, with: {title: First}}
  second: {uses: toy.report, from: write, with: {title: Second}}
"""

TABLE = "| stage | kind | status | why |\n|---|---|---|---|\n"


def section(stage: str, title: str) -> str:
    """What toy.report's report.md becomes under its stage's heading: every heading one level down, the
    fenced block as it was."""
    return (
        f"## {stage} (toy.report)\n\n"
        f"## {title}\n\n"
        "The input has 4 characters.\n\n"
        "### Input\n\n"
        "```text\n# not a heading\nabc\n```\n\n"
        "Done.\n"
    )


BUILT = (
    "# summ\n\n"
    + TABLE
    + "| write | toy.write | up to date |  |\n"
    + "| report | toy.report | up to date |  |\n"
    + "| second | toy.report | up to date |  |\n\n"
    + section("report", "First")
    + "\n"
    + section("second", "Second")
)


def summary(project: Project, *args: str):  # -> subprocess.CompletedProcess
    return project.cli("summary", "summ.yaml", "--cache-dir", str(project.cache), *args)


@pytest.fixture
def built(project: Project) -> Project:
    project.write_recipe(RECIPE, "summ.yaml")
    proc = project.cli("run", "summ.yaml", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return project


def test_built_recipe_gives_every_markdown_output_with_headings_demoted(built: Project) -> None:
    proc = summary(built)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == BUILT
    assert proc.stderr == ""
    assert sorted(built.runs()) == ["report", "second", "write"]  # summary ran nothing


def test_nothing_built_lists_every_stage_and_exits_1(project: Project) -> None:
    project.write_recipe(RECIPE, "summ.yaml")
    proc = summary(project)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == (
        "# summ\n\n"
        + TABLE
        + "| write | toy.write | not built | never built |\n"
        + "| report | toy.report | not built | waits on write; may be cut off |\n"
        + "| second | toy.report | not built | waits on write; may be cut off |\n"
    )
    assert project.runs() == []


def test_stale_stage_is_listed_with_no_section(built: Project) -> None:
    proc = summary(built, "--set", "stages.report.with.title=Changed")
    assert proc.returncode == 1, proc.stderr
    title, rest = proc.stdout.split("\n", 1)
    assert title.startswith("# summ@")  # a --set variant of the recipe
    assert rest == (
        "\n"
        + TABLE
        + "| write | toy.write | up to date |  |\n"
        + "| report | toy.report | stale | param title: 'First' -> 'Changed' |\n"
        + "| second | toy.report | up to date |  |\n\n"
        + section("second", "Second")
    )
    # a change upstream: everything below it is stale (its key waits on the rebuild), nothing is shown
    proc = summary(built, "--set", "stages.write.with.repeat=2")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.split("\n", 1)[1] == (
        "\n"
        + TABLE
        + "| write | toy.write | stale | param repeat: 1 -> 2 |\n"
        + "| report | toy.report | stale | waits on write; may be cut off |\n"
        + "| second | toy.report | stale | waits on write; may be cut off |\n"
    )


def test_output_file_is_replaced_or_appended_to(built: Project, tmp_path: Path) -> None:
    out = tmp_path / "out" / "summary.md"
    out.parent.mkdir()
    out.write_text("an earlier step\n")
    for _ in range(2):
        proc = summary(built, "--output", str(out), "--append")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
    assert out.read_text() == "an earlier step\n\n" + BUILT + "\n" + BUILT
    proc = summary(built, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == BUILT
    assert os.listdir(out.parent) == ["summary.md"]  # no temp file left behind


def test_append_without_output_is_a_usage_error(built: Project) -> None:
    proc = summary(built, "--append")
    assert proc.returncode == 2
    assert proc.stderr == "error: --append needs --output FILE\n"
    assert proc.stdout == ""


@pytest.mark.parametrize("damage", ["corrupted", "missing"])
def test_damaged_object_is_a_warning_and_its_stage_not_built(built: Project, damage: str) -> None:
    view = built.cache / "summ" / "report" / "report.md"
    digest = hashlib.sha256(view.read_bytes()).hexdigest()
    obj = built.cache / "objects" / digest[:2] / digest[2:]
    assert obj.is_file()
    if damage == "corrupted":
        obj.chmod(0o644)
        obj.write_text("# STALE CONTENT\n")
    else:
        obj.unlink()
    proc = summary(built)
    assert proc.returncode == 1, proc.stderr
    in_cache = "corrupted in the cache (hash mismatch)" if damage == "corrupted" else "missing from the cache"
    assert proc.stderr == f"warning: stage report: output markdown (report.md) {in_cache}; counted as not built\n"
    assert proc.stdout == (
        "# summ\n\n"
        + TABLE
        + "| write | toy.write | up to date |  |\n"
        + f"| report | toy.report | not built | output report.md {damage} in cache |\n"
        + "| second | toy.report | up to date |  |\n\n"
        + section("second", "Second")
    )


def test_stage_targets_restrict_the_summary(built: Project) -> None:
    proc = summary(built, "second")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "# summ\n\n" + TABLE + "| second | toy.report | up to date |  |\n\n" + section(
        "second", "Second"
    )
    proc = summary(built, "nosuch")
    assert proc.returncode == 2
    assert proc.stderr == "error: no stage 'nosuch' in the recipe\n"


def test_demote_headings_outside_fences_only() -> None:
    text = (
        "Title\n=====\n\nSub\ntwo lines\n---\n\n- item\n---\n\n"
        "~~~~\n# in a fence\n~~~\n# still in\n~~~~\n"
        "###### six\n#hashtag\n   # indented\n    # code\n"
        "```python\n# left open"
    )
    assert demote_headings(text) == (
        "## Title\n\n### Sub two lines\n\n- item\n---\n\n"
        "~~~~\n# in a fence\n~~~\n# still in\n~~~~\n"
        "###### six\n#hashtag\n   ## indented\n    # code\n"
        "```python\n# left open\n```"
    )
