"""Run records (one JSON per stage key) and refs (the latest key per recipe stage).

Written atomically (temp file + os.replace). A record that fails to parse is a
warning and a miss, never a crash and never a hit.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OutputRecord:
    digest: str
    is_dir: bool
    size: int
    path: str  # file or directory name inside the stage's output directory

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "is_dir": self.is_dir, "size": self.size, "path": self.path}


@dataclass(frozen=True)
class StageRecord:
    key: str
    stage: str
    kind: str
    components: dict[str, Any]
    outputs: dict[str, OutputRecord]
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    created: str = ""
    # Where and with what it was built, or that it was pulled (and whether a trusted key signed it).
    provenance: dict[str, Any] = field(default_factory=dict)
    # Files its code opened by path, `{label: digest}`, checked before it is served (pipeline/keys/discovered.py).
    discovered: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # what the stage warned about while it ran (StageContext.warn)

    @property
    def pulled_unverified(self) -> bool:
        """Taken from a remote without a trusted signature: a trusted job neither serves nor pushes it."""
        return self.provenance.get("origin") == "pulled" and not self.provenance.get("verified")

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "stage": self.stage,
            "kind": self.kind,
            "components": self.components,
            "outputs": {k: v.to_json() for k, v in self.outputs.items()},
            "summary": self.summary,
            "seconds": self.seconds,
            "created": self.created,
            "provenance": self.provenance,
            **({"discovered": self.discovered} if self.discovered else {}),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StageRecord":
        return cls(
            key=data["key"],
            stage=data["stage"],
            kind=data["kind"],
            components=data["components"],
            outputs={k: OutputRecord(**v) for k, v in data["outputs"].items()},
            summary=data.get("summary", {}),
            seconds=data.get("seconds", 0.0),
            created=data.get("created", ""),
            provenance=data.get("provenance", {}),
            discovered={str(k): str(v) for k, v in (data.get("discovered") or {}).items()},
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
        )


def write_json_atomic(path: Path, data: Any, indent: int | None = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_KEY = re.compile(r"[0-9a-f]{16,128}")


class RecordStore:
    def __init__(self, root: Path):
        self.root = root
        self.records = root / "records"
        self.refs = root / "refs"
        self._warned: set[Path] = set()

    def _path(self, key: str) -> Path:
        return self.records / key[:2] / f"{key[2:]}.json"

    def get(self, key: str) -> StageRecord | None:
        if not isinstance(key, str) or not _KEY.fullmatch(key):  # a damaged ref: no record, not a crash
            return None
        p = self._path(key)
        try:
            record = StageRecord.from_json(json.loads(p.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._warn(p, f"ignoring unreadable record {p} (it will be rebuilt): {exc}")
            return None
        if record.key != key:
            self._warn(p, f"ignoring record {p} (it will be rebuilt): it holds key {record.key[:12]}")
            return None
        return record

    def _warn(self, path: Path, message: str) -> None:
        if path not in self._warned:  # once per record, however often it is looked up
            self._warned.add(path)
            warnings.warn(message, stacklevel=3)

    def put(self, record: StageRecord) -> None:
        write_json_atomic(self._path(record.key), record.to_json())

    def all(self) -> list[StageRecord]:
        out = []
        for p in sorted(self.records.glob("??/*.json")):
            key = p.parent.name + p.stem
            rec = self.get(key)
            if rec is not None:
                out.append(rec)
        return out

    # -- refs: the latest key built for each (recipe, stage) ----------------
    def _ref_path(self, recipe: str, stage: str) -> Path:
        return self.refs / recipe / f"{stage}.json"

    def latest(self, recipe: str, stage: str) -> StageRecord | None:
        try:
            key = json.loads(self._ref_path(recipe, stage).read_text())["key"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self.get(key)

    def set_latest(self, recipe: str, stage: str, key: str) -> None:
        p = self._ref_path(recipe, stage)
        try:
            if json.loads(p.read_text())["key"] == key:
                return
        except (OSError, ValueError, KeyError, TypeError):
            pass
        write_json_atomic(p, {"key": key})

    def variants(self) -> list[str]:
        """Recipe names with refs that are --set variants (`name@digest`)."""
        return sorted(p.name for p in self.refs.glob("*@*") if p.is_dir())

    def all_latest_keys(self, variants: bool = True) -> set[str]:
        keys = set()
        for p in self.refs.glob("*/*.json"):
            if not variants and "@" in p.parent.name:
                continue
            try:
                key = json.loads(p.read_text())["key"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(key, str):
                keys.add(key)
        return keys


def provenance(run_id: str, components: dict[str, Any]) -> dict[str, Any]:
    """Where and with what a record was built (travels with it; never part of its key)."""
    import datetime
    import platform
    import socket

    return {
        "origin": "built",
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "toolchain": components.get("toolchain", {}),
        "run_id": run_id,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
