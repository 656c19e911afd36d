"""The commands that move results to and from a remote cache: pull, push, keygen."""

from __future__ import annotations

import argparse
import sys

from pipeline.cli.common import need_remote, open_from
from pipeline.errors import EXIT_FAILED, EXIT_OK, PipelineError, UsageError


def cmd_pull(args: argparse.Namespace) -> int:
    from pipeline.ops.pull import pull

    project = open_from(args)
    result = pull(project, need_remote(args))
    for stage, got in result.pulled.items():
        print(f"pulled  {stage}: {got / 1e6:.1f} MB")
    print(
        f"{len(result.local)} of {len(project.graph.order)} stages local; {result.downloaded / 1e6:.1f} MB downloaded"
    )
    for m in result.missing:
        print(f"not on the remote: {m}", file=sys.stderr)
    return EXIT_FAILED if result.missing else EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    """Upload the selected stages' current local results, unsigned: only `run` signs, and only what it built."""
    from pipeline.ops.push import push
    from pipeline.remote.store import RemoteUnavailable

    remote = need_remote(args)
    if remote.read_only:
        raise UsageError("push with --remote-read-only: nothing would be written")
    try:
        result = push(open_from(args), remote)
    except RemoteUnavailable as exc:
        raise PipelineError(str(exc)) from None
    for stage, sent in result.pushed.items():
        print(f"pushed  {stage}: {sent / 1e6:.1f} MB")
    for why in result.skipped:
        print(f"not pushed: {why}", file=sys.stderr)
    sent_mb = remote.transfer.uploaded / 1e6
    print(f"pushed {len(result.pushed)} stages ({sent_mb:.1f} MB); {len(result.skipped)} not pushed")
    return EXIT_FAILED if result.skipped else EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from pipeline.remote.trust import generate_keypair

    if args.private.exists():
        raise UsageError(f"{args.private} exists; a signing key is never overwritten")
    key_id = generate_keypair(args.private, args.public)
    print(f"wrote {args.private} (private, 0600) and {args.public} (public); key id {key_id}")
    return EXIT_OK
