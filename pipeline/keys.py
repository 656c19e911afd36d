"""Stage keys: the hash of exactly what a stage's outputs depend on.

    key = H(kind, version, code, canonical params, input digests, toolchain, model spec, fingerprint)

The components are kept in the record, in full, so a miss can be explained
field by field (`param opset: 17 -> 20`, `onnxsim 0.8.0 -> 0.8.1`).
"""
from __future__ import annotations

import inspect
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.hashing import DigestMemo, canonical_json, sha256_bytes
from pipeline.recipe import Recipe, StageNode
from pipeline.schema import DataSpec
from pipeline.stage import Stage


class KeyContextImpl:
    """The KeyContext handed to `Stage.fingerprint`: memoised file and code digests."""

    def __init__(self, memo: DigestMemo, recipe_dir: Path):
        self.memo, self.recipe_dir = memo, recipe_dir
        self._code: dict[tuple[str, str | None], dict[str, Any]] = {}

    def file_digest(self, path: Path) -> str:
        return self.memo.path_digest(Path(self.recipe_dir, path))

    def code_digest(self, ref: str, source: str | None = None) -> dict[str, Any]:
        k = (ref, source)
        if k not in self._code:
            self._code[k] = self.memo.code_digest(ref, self.recipe_dir, source)
        return self._code[k]


_CODE_CACHE: dict[type, str] = {}


def kind_code_digest(kind: type[Stage], memo: DigestMemo) -> str:
    """Digest of the kind's module source and its declared helper modules."""
    if kind not in _CODE_CACHE:
        files = [Path(inspect.getsourcefile(kind) or "")]
        for helper in kind.helpers:
            spec = importlib.util.find_spec(helper)
            if spec is None or spec.origin is None:
                raise ModuleNotFoundError(f"{kind.kind}: helper module {helper!r} not found")
            files.append(Path(spec.origin))
        _CODE_CACHE[kind] = sha256_bytes(",".join(memo.file_digest(f) for f in files).encode())
    return _CODE_CACHE[kind]


def dataset_digest(spec: DataSpec, keys: KeyContextImpl) -> str:
    """A dataset's identity: its validated spec plus the files or code it names."""
    data = spec.model_dump(mode="json")
    parts: dict[str, Any] = {"spec": data}
    if isinstance(data.get("path"), str):
        parts["path"] = keys.file_digest(Path(data["path"]))
    labels = data.get("labels")
    if isinstance(labels, str) and (data.get("kind") == "images" or labels.endswith(".npy")):
        parts["labels"] = keys.file_digest(Path(labels))
    if isinstance(data.get("python"), str):
        parts["python"] = keys.code_digest(data["python"])
    return sha256_bytes(canonical_json(parts).encode())


@dataclass(frozen=True)
class KeyResult:
    key: str
    components: dict[str, Any]


def compute_key(node: StageNode, recipe: Recipe, inputs: dict[str, str], fingerprint: dict[str, Any],
                stage: Stage, keys: KeyContextImpl) -> KeyResult:
    """Build the components from already-known input digests and hash them."""
    kind = node.kind
    comp: dict[str, Any] = {
        "kind": kind.kind,
        "version": kind.version,
        "code": kind_code_digest(kind, keys.memo),
        "params": node.params.model_dump(mode="json"),
        "inputs": dict(sorted(inputs.items())),
        "toolchain": stage.toolchain(),
    }
    if kind.uses_model and recipe.model is not None:
        model = recipe.model.model_dump(mode="json")
        if kind.model_fields is not None:
            model = {k: model[k] for k in kind.model_fields}
        comp["model"] = model
    if fingerprint:
        comp["fingerprint"] = fingerprint
    return KeyResult(sha256_bytes(canonical_json(comp).encode()), comp)


def explain(old: dict[str, Any], new: dict[str, Any], input_labels: dict[str, str] | None = None) -> list[str]:
    """Why `new` differs from `old`, one line per changed field."""
    reasons: list[str] = []
    if old.get("kind") != new.get("kind"):
        return [f"kind {old.get('kind')} -> {new.get('kind')}"]
    if old.get("version") != new.get("version"):
        reasons.append(f"{new['kind']} version {old.get('version')} -> {new.get('version')}")
    if old.get("code") != new.get("code"):
        reasons.append(f"code of {new['kind']} changed")
    for name, (a, b) in _diff(old.get("params", {}), new.get("params", {})):
        reasons.append(f"param {name}: {_short(a)} -> {_short(b)}")
    old_in, new_in = old.get("inputs", {}), new.get("inputs", {})
    for name in sorted(set(old_in) | set(new_in)):
        if old_in.get(name) != new_in.get(name):
            label = (input_labels or {}).get(name, name)
            what = "added" if name not in old_in else "removed" if name not in new_in else "changed"
            reasons.append(f"input {label} {what}")
    for name, (a, b) in _diff(old.get("toolchain", {}), new.get("toolchain", {})):
        reasons.append(f"{name} {'(none)' if a is _MISSING else a} -> {'(none)' if b is _MISSING else b}")
    for name, (a, b) in _diff(old.get("model", {}), new.get("model", {})):
        reasons.append(f"model.{name}: {_short(a)} -> {_short(b)}")
    for name, (a, b) in _diff(old.get("fingerprint", {}), new.get("fingerprint", {})):
        reasons.append(f"{name} changed" if _digestish(a) or _digestish(b) else f"{name}: {_short(a)} -> {_short(b)}")
    return reasons or ["key changed"]


_MISSING = object()


def _diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, tuple[Any, Any]]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k, _MISSING), b.get(k, _MISSING), f"{prefix}{k}.")
        return out
    if a == b:
        return []
    return [(prefix.rstrip("."), (a, b))]


def _short(v: Any) -> str:
    if v is _MISSING:
        return "(unset)"
    text = canonical_json(v) if isinstance(v, (dict, list)) else repr(v) if isinstance(v, str) else str(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _digestish(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
