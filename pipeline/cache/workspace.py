"""Fresh per-stage work directories inside the cache root (same filesystem: publishing is a rename)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def new_workspace(tmp_root: Path, stage: str) -> Path:
    tmp_root.mkdir(parents=True, exist_ok=True)
    ws = Path(tempfile.mkdtemp(dir=tmp_root, prefix=f"{os.getpid()}-{stage}-"))
    (ws / "out").mkdir()
    (ws / "in").mkdir()
    return ws


def clean_stale(tmp_root: Path) -> None:
    """Remove work directories left by processes that died (a crash, a kill -9)."""
    if not tmp_root.is_dir():
        return
    for entry in tmp_root.iterdir():
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
