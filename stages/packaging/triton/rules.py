"""L1 over one config: every rule of Triton's core (`core`, `sequence`, `ensemble`), in the order core applies them."""

from __future__ import annotations

from typing import Any, Collection

from stages.packaging.triton import core, ensemble, sequence
from stages.packaging.triton.parse import Problems


def check_config(config: Any, where: str, folder: str | None = None, files: Collection[str] = ()) -> list[str]:
    """Every core rule `config` breaks, as one-line problems (empty: Triton core accepts it)."""
    p = Problems(where, [])
    ident, missing = core.identity(config, folder, files)
    if missing:
        p.add("", missing)
    core.check_model_config(config, ident, p)
    sequence.check_sequence_batching(config, ident, p)
    if config.HasField("ensemble_scheduling"):
        ensemble.check_ensemble_config(config, ident, p)
    elif ident.platform == core.ENSEMBLE:
        p.add(
            "ensemble_scheduling", f"missing: platform is {core.ENSEMBLE!r} (Triton: ensemble scheduling must be set)"
        )
    core.check_instance_groups(config, ident, p)
    core.check_io(config, ident, p)
    return p.lines
