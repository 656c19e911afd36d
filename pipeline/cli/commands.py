"""One function per CLI command. Each loads what it needs and returns an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from pipeline.cache import RESERVED, Cache, cache_root
from pipeline.cache.lockfile import lock_path, read_lock
from pipeline.errors import EXIT_FAILED, EXIT_OK, PipelineError, RecipeError, UsageError, did_you_mean
from pipeline.recipe.graph import StageGraph, stage_graph
from pipeline.recipe.load import Recipe, load_recipe
from pipeline.remote.config import need_remote, remote_for
from pipeline.run.plan import Decision, Planner
from pipeline.status import Status


def _load(args: argparse.Namespace) -> tuple[Recipe, StageGraph, Cache]:
    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.name in RESERVED:
        where = ("name",) if recipe.spec.name else ()
        raise RecipeError(
            recipe.path,
            recipe.line(*where) if where else None,
            "name" if where else None,
            f"recipe name {recipe.name!r} is reserved for the cache's own folders"
            + ("" if where else " (set `name:` in the recipe)"),
        )
    cache = Cache(cache_root(args.cache_dir))
    return recipe, stage_graph(recipe, getattr(args, "stages", []) or [], cache.graphs), cache


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.report.console import ConsoleReporter, RunRecordReporter, dump_json
    from pipeline.run.events import Fanout
    from pipeline.run.executor import Executor, RunOptions

    recipe, graph, cache = _load(args)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    forced = [s for s in args.force if s != "*"]
    for s in forced:
        if s not in recipe.stages:
            raise UsageError(f"--force {s}: no such stage")
        if s not in graph.parents:
            raise UsageError(
                f"--force {s}: not among the stages this run builds ({', '.join(graph.order)}); "
                "`--force STAGE` takes one stage: write targets before it or use --force=STAGE"
            )
    options = RunOptions(
        targets=tuple(args.stages),
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


def _plan(args: argparse.Namespace, remote: Any = None) -> tuple[Recipe, Cache, list[Decision]]:
    recipe, graph, cache = _load(args)
    decisions = Planner(recipe, cache, remote=remote).plan(list(graph.order))
    graph.remember()
    cache.memo.flush()
    if args.skip_unavailable:
        decisions = [d for d in decisions if d.status != Status.UNAVAILABLE]
    return recipe, cache, decisions


def cmd_plan(args: argparse.Namespace) -> int:
    recipe, _, decisions = _plan(args, remote_for(args))
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
    _print_decisions(recipe, decisions, f"plan for {recipe.path}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    recipe, _, decisions = _plan(args, remote_for(args, always=False))
    lock = read_lock(lock_path(recipe.path))
    rows: list[tuple[str, Status, list[str]]] = []
    stale = False
    for d in decisions:
        locked = lock.get(d.stage, {}).get("key")
        if d.status in (Status.CACHED, Status.PULLED) and locked == d.key:
            rows.append((d.stage, Status.UP_TO_DATE, list(d.reasons)))
            continue
        stale = True
        if d.failure is not None:
            rows.append((d.stage, d.failure.status, list(d.reasons)))
            continue
        if d.status in (Status.CACHED, Status.PULLED):
            why = [
                "not in the lock file"
                if locked is None
                else "lock file holds another key (run `pipeline run` and commit the lock)"
            ]
        else:
            why = list(d.reasons)
        rows.append((d.stage, Status.UNAVAILABLE if d.status == Status.UNAVAILABLE else Status.STALE, why))
    if args.json:  # the same shape as `plan --json`'s rows
        stages = [{"stage": s, "status": str(st), "reasons": w} for s, st, w in rows]
        print(json.dumps({"up_to_date": not stale, "stages": stages}, indent=1))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"status of {recipe.path}: {'stale' if stale else 'up to date'}", title_justify="left")
        for col in ("stage", "status", "why"):
            table.add_column(col, overflow="fold")
        for stage, state, reasons in rows:
            table.add_row(stage, str(state), escape("; ".join(reasons)))
        Console(highlight=False).print(table)
    return EXIT_FAILED if stale else EXIT_OK


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
    recipe, _, cache = _load(args)
    if args.stage not in recipe.stages:
        raise UsageError(f"no stage {args.stage!r} in {recipe.path}")
    record = cache.records.latest(recipe.name, args.stage)
    remote = remote_for(args)
    if remote is not None:  # the stage's current result, from the remote when it is not here
        args.stages = [args.stage]
        pulled = _pull(args, remote, quiet=True)
        record = pulled.get(args.stage, record)
    if record is None:
        raise PipelineError(f"stage {args.stage} has not been built in {cache.root}")
    from pipeline.cache.views import update_view

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
    recipe, graph, cache = _load(args)
    remote = remote_for(args)
    decisions = Planner(recipe, cache, remote=remote).plan(list(graph.order))
    graph.remember()
    if remote is not None:
        decisions = [_fetch_reports(recipe, cache, remote, d) for d in decisions]
    summary = summarize(recipe, cache, decisions, args.stages)
    cache.memo.flush()
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    write_text(summary.markdown(), args.output, append=args.append)
    return EXIT_OK if summary.complete else EXIT_FAILED


def _pull(args: argparse.Namespace, remote: Any, quiet: bool = False) -> dict[str, Any]:
    """Bring the selected stages' current results into the local cache; return stage -> record for every
    stage that is now local (pulled or already cached)."""
    from pipeline.cache.views import update_view
    from pipeline.remote.store import BadObject, RemoteUnavailable
    from pipeline.remote.sync import fetch

    recipe, graph, cache = _load(args)
    planner = Planner(recipe, cache, remote=remote)
    decisions = planner.plan(list(graph.order))
    graph.remember()
    local: dict[str, Any] = {}
    missing = []
    total = 0
    for d in decisions:
        if d.status == Status.CACHED and d.record is not None:
            local[d.stage] = d.record
            continue
        if d.status != Status.PULLED or d.remote is None:
            missing.append(f"{d.stage} ({d.status})")
            continue
        try:
            record, got = fetch(remote, cache, recipe.name, d.stage, d.remote)
        except BadObject as exc:
            remote.reject(d.remote.record.key, str(exc))
            missing.append(f"{d.stage} (corrupted on the remote)")
            continue
        except RemoteUnavailable:
            missing.append(f"{d.stage} (remote unreachable)")
            continue
        update_view(cache, recipe.name, d.stage, record)
        local[d.stage] = record
        total += got
        if not quiet:
            print(f"pulled  {d.stage}: {got / 1e6:.1f} MB")
    cache.memo.flush()
    if not quiet:
        print(f"{len(local)} of {len(decisions)} stages local; {total / 1e6:.1f} MB downloaded")
        for m in missing:
            print(f"not on the remote: {m}", file=sys.stderr)
    args.missing = missing
    return local


def cmd_pull(args: argparse.Namespace) -> int:
    _pull(args, need_remote(args))
    return EXIT_FAILED if args.missing else EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    """Upload the selected stages' current local results, unsigned: only `run` signs, and only what it built."""
    from pipeline.remote.store import RemoteUnavailable

    remote = need_remote(args)
    if remote.read_only:
        raise UsageError("push with --remote-read-only: nothing would be written")
    recipe, graph, cache = _load(args)
    decisions = Planner(recipe, cache).plan(list(graph.order))
    pushed = skipped = 0
    for d in decisions:
        if d.status != Status.CACHED or d.record is None:
            print(f"not pushed: {d.stage} is not built here ({d.status})", file=sys.stderr)
            skipped += 1
            continue
        if d.record.provenance.get("origin") == "pulled":
            print(f"not pushed: {d.stage} was pulled from {d.record.provenance.get('remote')}", file=sys.stderr)
            skipped += 1
            continue
        try:
            sent = remote.push(d.record, cache.objects, sign=False)
        except RemoteUnavailable as exc:
            raise PipelineError(str(exc)) from None
        pushed += 1
        print(f"pushed  {d.stage}: {sent / 1e6:.1f} MB")
    print(f"pushed {pushed} stages ({remote.transfer.uploaded / 1e6:.1f} MB); {skipped} not pushed")
    return EXIT_FAILED if skipped else EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from pipeline.remote.trust import generate_keypair

    if args.private.exists():
        raise UsageError(f"{args.private} exists; a signing key is never overwritten")
    key_id = generate_keypair(args.private, args.public)
    print(f"wrote {args.private} (private, 0600) and {args.public} (public); key id {key_id}")
    return EXIT_OK


def _fetch_reports(recipe: Recipe, cache: Cache, remote: Any, d: Decision) -> Decision:
    """A stage the remote serves whose outputs include Markdown reports: brought here, so the summary has them."""
    import dataclasses

    from pipeline.remote.store import BadObject, RemoteUnavailable
    from pipeline.remote.sync import fetch

    kind = recipe.stages[d.stage].kind
    if d.status != Status.PULLED or d.remote is None or not any(o.path.endswith(".md") for o in kind.outputs.values()):
        return d
    try:
        record, _ = fetch(remote, cache, recipe.name, d.stage, d.remote)
    except (BadObject, RemoteUnavailable) as exc:
        if isinstance(exc, BadObject):
            remote.reject(d.remote.record.key, str(exc))
        return d
    return dataclasses.replace(d, status=Status.CACHED, record=record, remote=None)


def cmd_gc(args: argparse.Namespace) -> int:
    from pipeline.cache.gc import collect

    cache = Cache(cache_root(args.cache_dir))
    if args.remote is not None:
        return _gcremote_for(args, cache)
    result = collect(cache, dry_run=args.dry_run, keep_variants=args.keep_variants)
    cache.memo.flush()
    print(result.describe(args.dry_run))
    return EXIT_OK


def _gcremote_for(args: argparse.Namespace, cache: Cache) -> int:
    """Remote records are kept when a lock file this cache knows names them (or this cache's latest
    builds do) or when they are younger than --keep-days; objects, when a kept record names them or
    they are younger than --grace-hours."""
    from pipeline.cache.gc import root_keys
    from pipeline.remote.gc import collect_remote
    from pipeline.remote.store import RemoteUnavailable

    remote = need_remote(args)
    if remote.read_only and not args.dry_run:
        raise UsageError("gc --remote with --remote-read-only: nothing would be deleted (add --dry-run)")
    try:
        result = collect_remote(remote, root_keys(cache), args.keep_days, args.grace_hours, dry_run=args.dry_run)
    except RemoteUnavailable as exc:
        raise PipelineError(str(exc)) from None
    print(result.describe(remote.url, args.dry_run, args.grace_hours))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    cache = Cache(cache_root(args.cache_dir))
    bad = []
    objects = cache.objects.all_objects()
    for digest in objects:
        if not cache.objects.verify_file(digest, rehash=True):
            bad.append(digest)
            print(f"corrupted: {cache.objects.path(digest)}")
            if args.remove:
                cache.objects.path(digest).unlink()
                cache.memo.forget(cache.objects.path(digest))
    cache.memo.flush()
    print(f"verified {len(objects)} objects: {len(bad)} corrupted" + (" (removed)" if bad and args.remove else ""))
    return EXIT_FAILED if bad else EXIT_OK


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
