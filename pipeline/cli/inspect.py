"""The commands that look and change nothing but the cache's memo: plan, status, graph, show, summary, stages."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.cli.common import open_from, remote_for
from pipeline.errors import EXIT_FAILED, EXIT_OK, PipelineError, UsageError, did_you_mean
from pipeline.recipe.load import Recipe, load_recipe
from pipeline.run.plan import Decision
from pipeline.status import Status


def cmd_plan(args: argparse.Namespace) -> int:
    project = open_from(args)
    decisions = project.plan(remote_for(args), args.skip_unavailable)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "stage": d.stage,
                        "status": str(d.status),
                        "reasons": list(d.reasons),
                        "key": d.key,
                        **({"failed": d.failure.to_json()} if d.failure is not None else {}),
                    }
                    for d in decisions
                ],
                indent=1,
            )
        )
        return EXIT_OK
    _print_decisions(project.recipe, decisions, f"plan for {project.recipe.path}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.ops.status import status

    project = open_from(args)
    result = status(project, remote_for(args, always=False), args.skip_unavailable)
    if args.json:  # the same shape as `plan --json`'s rows
        stages = [{"stage": s.stage, "status": str(s.status), "reasons": list(s.reasons)} for s in result.stages]
        print(json.dumps({"up_to_date": result.up_to_date, "stages": stages}, indent=1))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        word = "up to date" if result.up_to_date else "stale"
        table = Table(title=f"status of {project.recipe.path}: {word}", title_justify="left")
        for col in ("stage", "status", "why"):
            table.add_column(col, overflow="fold")
        for s in result.stages:
            table.add_row(s.stage, str(s.status), escape("; ".join(s.reasons)))
        Console(highlight=False).print(table)
    return EXIT_OK if result.up_to_date else EXIT_FAILED


def _print_decisions(recipe: Recipe, decisions: list[Decision], title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    style = {
        Status.CACHED: "green",
        Status.PULLED: "green",
        Status.RUN: "cyan",
        Status.WAITS: "blue",
        Status.UNAVAILABLE: "yellow",
    }
    # the table reads as a sentence; --json keeps the enum's word
    word = {Status.RUN: "will run", Status.PULLED: "from remote"}
    table = Table(title=title, title_justify="left")
    for col in ("stage", "kind", "decision", "why"):
        table.add_column(col, overflow="fold")
    for d in decisions:
        decided = f"[{style[d.status]}]{word.get(d.status, d.status)}[/]"
        if d.failure is not None:  # it will run again: failures are not cached
            decided = f"[red]{d.failure.status}[/], will run"
        table.add_row(d.stage, recipe.stages[d.stage].kind.kind, decided, escape("\n".join(d.reasons)))
    Console(highlight=False).print(table)


def cmd_graph(args: argparse.Namespace) -> int:
    from pipeline.recipe.graph import build_graph, to_dot, to_mermaid

    recipe = load_recipe(args.recipe, args.overrides)
    graph = build_graph(recipe)
    print(to_dot(graph, recipe) if args.format == "dot" else to_mermaid(graph, recipe))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from pipeline.cache.views import update_view

    project = open_from(args, stages=[args.stage])
    recipe, cache = project.recipe, project.cache
    if args.stage in recipe.matrices:
        raise UsageError(f"{args.stage} is a matrix stage: show one of {', '.join(recipe.matrices[args.stage])}")
    record = cache.records.latest(recipe.name, args.stage)
    remote = remote_for(args)
    if remote is not None:  # the stage's current result, from the remote when it is not here
        from pipeline.ops.pull import pull

        record = pull(project, remote).local.get(args.stage, record)
    if record is None:
        raise PipelineError(f"stage {args.stage} has not been built in {cache.root}")
    if all(cache.objects.has(o.digest, o.is_dir) for o in record.outputs.values()):
        update_view(cache, recipe.name, args.stage, record)
    for name, out in record.outputs.items():
        view = cache.view_dir(recipe.name, args.stage) / out.path
        print(f"{name}\t{view}")
    return EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    """Every up-to-date stage's `.md` outputs as one Markdown document (see pipeline.report.markdown); 1 when a
    selected stage is not built or stale (what there is is still written)."""
    from pipeline.report.markdown import summarize, write_text

    if args.append and args.output is None:
        raise UsageError("--append needs --output FILE")
    project = open_from(args)
    remote = remote_for(args)
    decisions = project.plan(remote)
    if remote is not None:
        from pipeline.ops.pull import with_reports

        decisions = with_reports(project, remote, decisions)
    base = args.output.parent if args.output is not None else None  # links resolve from where it is read
    summary = summarize(project.recipe, project.cache, decisions, project.recipe.stage_names(args.stages), base)
    project.cache.memo.flush()
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    write_text(summary.markdown(), args.output, append=args.append)
    return EXIT_OK if summary.complete else EXIT_FAILED


def cmd_stages(args: argparse.Namespace) -> int:
    from pipeline.recipe.registry import Registry
    from pipeline.report.reference import describe_kind, kind_summary, stage_reference

    registry = Registry()
    if args.recipe is not None:  # plugin kinds live beside a recipe: load it to see them
        load_recipe(args.recipe, [], registry)
    if args.markdown:
        print(stage_reference(registry))
        return EXIT_OK
    if args.kind is None:
        for name in registry.names():
            try:
                kind = registry.get(name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
                print(f"{name:16} [cannot load: {type(exc).__name__}: {exc}]")
                continue
            unmet = kind().unmet()
            note = f"  [unavailable: {unmet}]" if unmet else ""
            print(f"{name:16} {kind_summary(kind)}{note}")
        return EXIT_OK
    if args.kind not in registry.names():
        hint = "" if args.recipe else "; a kind a recipe's plugins define needs --recipe RECIPE"
        raise UsageError(f"unknown stage kind {args.kind!r}{did_you_mean(args.kind, registry.names())}{hint}")
    print(describe_kind(registry.get(args.kind)))
    return EXIT_OK
