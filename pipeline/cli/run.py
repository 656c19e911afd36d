"""`pipeline run`: parse the flags into RunOptions, run the executor with the console and the run record
listening, print the record with --json."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from pipeline.cache.lockfile import lock_path
from pipeline.cli.common import open_from, remote_for
from pipeline.errors import UsageError


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.report.console import ConsoleReporter, dump_json
    from pipeline.report.record import RunRecordReporter
    from pipeline.run.events import Fanout
    from pipeline.run.executor import Executor, RunOptions

    project = open_from(args)
    recipe, graph, cache = project.recipe, project.graph, project.cache
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    forced = recipe.stage_names([s for s in args.force if s != "*"])
    for s in forced:
        if s not in recipe.stages:
            raise UsageError(f"--force {s}: no such stage")
        if s not in graph.parents:
            raise UsageError(
                f"--force {s}: not among the stages this run builds ({', '.join(graph.order)}); "
                "`--force STAGE` takes one stage: write targets before it or use --force=STAGE"
            )
    options = RunOptions(
        targets=tuple(recipe.stage_names(args.stages)),
        force=tuple(forced),
        force_all="*" in args.force,
        keep_going=args.keep_going,
        jobs=args.jobs,
        in_process=args.in_process,
        skip_unavailable=args.skip_unavailable,
        executor=args.executor,
        ray_address=args.ray_address,
    )
    if args.executor == "ray" and args.in_process:
        raise UsageError("--in-process and --executor ray exclude each other")
    record = RunRecordReporter(cache.runs, recipe.path)
    console = ConsoleReporter(quiet=args.quiet)
    document = _reserve_stdout() if args.json else sys.stdout
    result = Executor(recipe, graph, cache, options, Fanout(record, console), remote=remote_for(args)).run()
    if recipe.overrides and not args.quiet:
        print(
            f"note: a run with --set builds a variant: views under {cache.view_dir(recipe.name, '')}, "
            f"{lock_path(recipe.path)} left as it was",
            file=sys.stderr,
        )
    if args.json:
        dump_json(record.to_json(), document)
    return result.exit_code


def _reserve_stdout() -> TextIO:
    """With --json, stdout carries the run record alone: what a library prints meanwhile (Ray's notices that a
    node died, at any moment, from its own threads) goes to stderr. Returns the stream for the record."""
    sys.stdout.flush()
    document = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return document
