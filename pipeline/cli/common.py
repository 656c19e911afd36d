"""What every command shares: opening the recipe its arguments name, and the remote they (or the
environment) name."""

from __future__ import annotations

import argparse

from pipeline.ops.project import Project, open_project
from pipeline.remote.config import need_remote, remote_for

__all__ = ["open_from", "need_remote", "remote_for"]


def open_from(args: argparse.Namespace, stages: list[str] | None = None) -> Project:
    """The project `args.recipe` names, with its `--set` overrides, cache and selected stages."""
    selected = stages if stages is not None else getattr(args, "stages", []) or []
    return open_project(args.recipe, args.overrides, args.cache_dir, selected)
