"""The remote cache a command uses, from its flags, else the environment: PIPELINE_REMOTE,
PIPELINE_REMOTE_READ_ONLY, PIPELINE_REMOTE_TRUST (public keys, `:`-separated) and
PIPELINE_REMOTE_SIGNING_KEY. Nothing is imported or contacted here beyond reading the keys.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pipeline.cache import cache_root
from pipeline.errors import UsageError


def remote_from(
    url: str | None, read_only: bool = False, trust: str | None = None, signing_key: str | None = None
) -> Any:
    """The remote these settings (else the environment) name; None when none is configured."""
    from pipeline.remote.store import Remote
    from pipeline.remote.trust import Signer, Verifier

    url = url or os.environ.get("PIPELINE_REMOTE") or None
    if url is None:
        return None
    read_only = read_only or os.environ.get("PIPELINE_REMOTE_READ_ONLY", "") not in ("", "0", "false")
    trust = trust or os.environ.get("PIPELINE_REMOTE_TRUST") or None
    signing_key = signing_key or os.environ.get("PIPELINE_REMOTE_SIGNING_KEY") or None
    verifier = Verifier.load([Path(p) for p in trust.split(os.pathsep) if p]) if trust else None
    signer = Signer.load(Path(signing_key)) if signing_key and not read_only else None
    return Remote(url, read_only=read_only, verifier=verifier, signer=signer)


def remote_for(args: argparse.Namespace, always: bool = True) -> Any:
    """The remote a command's flags or the environment name (None without one), with this cache's index of
    what it holds (pipeline/remote/index.py). `always=False`: only when `--remote` was given (`status`,
    whose plain form never looks beyond the local cache)."""
    if not always and args.remote is None:
        return None
    remote = remote_from(args.remote or None, args.remote_read_only, args.remote_trust, args.signing_key)
    if remote is None and args.remote is not None:
        raise UsageError("--remote without a URL needs PIPELINE_REMOTE")
    if remote is not None:
        from pipeline.remote.index import RemoteIndex

        remote.index = RemoteIndex(cache_root(args.cache_dir), remote.url)
    return remote


def need_remote(args: argparse.Namespace) -> Any:
    remote = remote_for(args)
    if remote is None:
        raise UsageError(f"`pipeline {args.command}` needs a remote: --remote URL or PIPELINE_REMOTE")
    return remote
