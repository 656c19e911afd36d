"""The commands that keep a cache in shape: gc (local or remote) and verify."""

from __future__ import annotations

import argparse

from pipeline.cache import Cache, cache_root
from pipeline.cli.common import need_remote
from pipeline.errors import EXIT_FAILED, EXIT_OK, PipelineError, UsageError


def cmd_gc(args: argparse.Namespace) -> int:
    from pipeline.cache.gc import collect

    cache = Cache(cache_root(args.cache_dir))
    if args.remote is not None:
        return _gcremote_for(args, cache)
    result = collect(cache, dry_run=args.dry_run, keep_variants=args.keep_variants, drop_trials=args.trials)
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
