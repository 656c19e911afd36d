"""Stage keys: the hash of exactly what a stage's outputs depend on.

    key = H(kind, version, code, canonical params, input digests, toolchain, model spec, fingerprint)

The components are kept in the record, in full, so a miss can be explained
field by field (`param opset: 17 -> 20`, `onnxsim 0.8.0 -> 0.8.1`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cache.hashing import DigestMemo, canonical_json, sha256_bytes
from pipeline.datakind import DataKind
from pipeline.keys.closure import code_closure, kind_closure
from pipeline.recipe.load import DataNode, Recipe, StageNode
from pipeline.stage import Stage, member_of


class KeyContextImpl:
    """The KeyContext handed to `Stage.fingerprint`: memoised file and code digests."""

    def __init__(self, memo: DigestMemo, recipe_dir: Path, exclude: tuple[Path, ...] = ()):
        self.memo, self.recipe_dir, self.exclude = memo, recipe_dir, exclude
        self._code: dict[tuple[str, str | None], dict[str, Any]] = {}

    def file_digest(self, path: Path) -> str:
        return self.memo.path_digest(Path(self.recipe_dir, path))

    def code_digest(self, ref: str, source: str | None = None) -> dict[str, Any]:
        """The import closure of the code `ref` names (see pipeline/keys/closure.py), plus `source`'s files."""
        k = (ref, source)
        if k not in self._code:
            self._code[k] = code_closure(ref, self.recipe_dir, self.memo, source, self.exclude)
        return self._code[k]


def kind_code(kind: type[Stage] | type[DataKind], memo: DigestMemo) -> dict[str, Any]:
    """A stage or dataset kind's code: its module and every local module and distribution it imports, derived by
    reading imports (never a hand-kept list). Remembered for the life of `memo` (one plan)."""
    known = memo.scratch.setdefault("kind_code", {})
    if kind not in known:
        known[kind] = kind_closure(kind.__module__, Path(inspect.getsourcefile(kind) or ""), memo)
    return known[kind]


def toolchain_of(stage: Stage[Any], params: Any) -> dict[str, str]:
    """The key's toolchain: the kind's software versions, then its hardware part: the declared target's
    identity (the same on every machine), else this machine's (`Stage.hardware`)."""
    target = stage.target(params)
    hardware = target.identity() if target is not None else stage.hardware(params)
    return {**stage.toolchain(params), **hardware}


def dataset_digest(parts: dict[str, Any]) -> str:
    """A dataset's digest, the input digest of every stage that reads it."""
    return sha256_bytes(canonical_json(parts).encode())


def dataset_parts(node: DataNode, keys: KeyContextImpl) -> dict[str, Any]:
    """A dataset's identity: its validated spec, its kind's code (the reader: no stage's closure holds it)
    and what the kind's fingerprint adds, the files it reads and the code it calls (kept in the key's
    components so a miss can say which file or module of the dataset changed)."""
    parts: dict[str, Any] = {"spec": node.spec.model_dump(mode="json"), "reader": kind_code(node.kind, keys.memo)}
    reads = node.kind().fingerprint(node.spec, keys)
    if reads:
        parts["reads"] = reads
    return parts


@dataclass(frozen=True)
class KeyResult:
    key: str
    components: dict[str, Any]


def compute_key(
    node: StageNode,
    recipe: Recipe,
    inputs: dict[str, str],
    fingerprint: dict[str, Any],
    stage: Stage,
    keys: KeyContextImpl,
    datasets: dict[str, dict[str, Any]] | None = None,
) -> KeyResult:
    """Build the components from already-known input digests (and the parts of the datasets among
    them, so a miss can be explained) and hash them."""
    kind = node.kind
    comp: dict[str, Any] = {
        "kind": kind.kind,
        "version": kind.version,
        "code": kind_code(kind, keys.memo),
        "params": node.params.model_dump(mode="json"),
        "inputs": dict(sorted(inputs.items())),
        "toolchain": toolchain_of(stage, node.params),
    }
    # `inputs` comes in the recipe's order; a kind reads a fan-in's members in it (`ctx.members`): it is an input too
    members = [k for k in inputs if member_of(k)]
    if members:
        comp["members"] = members
    if kind.uses_model() and recipe.model is not None:
        model = recipe.model.model_dump(mode="json")
        model = {k: model[k] for k in kind.model_fields}
        comp["model"] = model
    if fingerprint:
        comp["fingerprint"] = fingerprint
    if datasets:
        comp["datasets"] = dict(sorted(datasets.items()))
    return KeyResult(sha256_bytes(canonical_json(comp).encode()), comp)


def explain(old: dict[str, Any], new: dict[str, Any], input_labels: dict[str, str] | None = None) -> list[str]:
    """Why `new` differs from `old`, one line per changed field (a module or distribution by name)."""
    reasons: list[str] = []
    if old.get("kind") != new.get("kind"):
        return [f"kind {old.get('kind')} -> {new.get('kind')}"]
    if old.get("version") != new.get("version"):
        reasons.append(f"{new['kind']} version {old.get('version')} -> {new.get('version')}")
    reasons += _code_reasons(f"code of {new['kind']}", old.get("code"), new.get("code"))
    for name, (a, b) in _diff(old.get("params", {}), new.get("params", {})):
        reasons.append(f"param {name}: {_short(a)} -> {_short(b)}")
    old_in, new_in = old.get("inputs", {}), new.get("inputs", {})
    old_data, new_data = old.get("datasets", {}), new.get("datasets", {})
    for name in sorted(set(old_in) | set(new_in)):
        if old_in.get(name) != new_in.get(name):
            label = (input_labels or {}).get(name, name)
            why = _dataset_reasons(label, old_data.get(name), new_data.get(name))
            what = "added" if name not in old_in else "removed" if name not in new_in else "changed"
            reasons += why or [f"input {label} {what}"]
    if old.get("members") != new.get("members") and set(old.get("members") or ()) == set(new.get("members") or ()):
        reasons.append("fan-in order: " + ", ".join(new.get("members") or ()))
    for name, (a, b) in _diff(old.get("toolchain", {}), new.get("toolchain", {})):
        reasons.append(f"{name} {'(none)' if a is _MISSING else a} -> {'(none)' if b is _MISSING else b}")
    for name, (a, b) in _diff(old.get("model", {}), new.get("model", {})):
        reasons.append(f"model.{name}: {_short(a)} -> {_short(b)}")
    old_fp, new_fp = old.get("fingerprint", {}), new.get("fingerprint", {})
    for name in sorted(set(old_fp) | set(new_fp)):
        reasons += _value_reasons(name, old_fp.get(name, _MISSING), new_fp.get(name, _MISSING))
    return reasons or ["key changed"]


def _is_closure(v: Any) -> bool:
    return isinstance(v, dict) and "modules" in v and "distributions" in v


def _code_reasons(what: str, old: Any, new: Any) -> list[str]:
    """`code of X: module stages.data changed`, `code of X: numpy 1.26.4 -> 2.1.0`."""
    if old == new:
        return []
    if not (_is_closure(old) and _is_closure(new)):
        return [f"{what} changed"]
    reasons = []
    for mod in sorted(set(old["modules"]) | set(new["modules"])):
        a, b = old["modules"].get(mod), new["modules"].get(mod)
        if a != b:
            change = "added" if a is None else "removed" if b is None else "changed"
            reasons.append(f"{what}: module {mod} {change}")
    for dist in sorted(set(old["distributions"]) | set(new["distributions"])):
        a, b = old["distributions"].get(dist), new["distributions"].get(dist)
        if a != b:
            reasons.append(f"{what}: {dist} {a or '(not imported)'} -> {b or '(not imported)'}")
    old_src, new_src = old.get("source"), new.get("source")
    if isinstance(old_src, dict) and isinstance(new_src, dict):
        for file in sorted(set(old_src) | set(new_src)):
            if old_src.get(file) != new_src.get(file):
                change = "added" if file not in old_src else "removed" if file not in new_src else "changed"
                reasons.append(f"{what}: source file {file} {change}")
    elif old_src != new_src:
        reasons.append(f"{what}: source changed")
    return reasons or [f"{what} changed"]


def _value_reasons(name: str, a: Any, b: Any) -> list[str]:
    """Reasons for one fingerprint entry: code closures by module, lists item by item, digests as `changed`."""
    if a == b:
        return []
    if _is_closure(a) or _is_closure(b):
        return _code_reasons(name, a, b)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [r for i, (x, y) in enumerate(zip(a, b)) for r in _value_reasons(f"{name}[{i}]", x, y)]
    reasons = []
    for key, (x, y) in _diff(a, b, f"{name}."):
        reasons.append(f"{key} changed" if _digestish(x) or _digestish(y) else f"{key}: {_short(x)} -> {_short(y)}")
    return reasons


def _dataset_reasons(label: str, old: Any, new: Any) -> list[str]:
    """`data.calib code: module digits_plugin changed`, `data.calib: calib.npz changed`,
    `data.calib: spec.count: 300 -> 200`, `data.calib reader: module stages.data.arrays changed`."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return []
    reasons = _code_reasons(f"{label} reader", old.get("reader"), new.get("reader"))
    old_reads, new_reads = old.get("reads") or {}, new.get("reads") or {}
    for field in sorted(set(old_reads) | set(new_reads)):
        a, b = old_reads.get(field, _MISSING), new_reads.get(field, _MISSING)
        if a == b:
            continue
        if _is_closure(a) or _is_closure(b):
            reasons += _code_reasons(f"{label} code", a, b)
        else:  # a file: named as the spec names it (`path` needs no word before it)
            named = new.get("spec", {}).get(field)
            what = [field] if field != "path" else []
            reasons.append(f"{label}: {' '.join(what + ([named] if isinstance(named, str) else []))} changed")
    return reasons + [
        f"{label}: {k}: {_short(x)} -> {_short(y)}" for k, (x, y) in _diff(old.get("spec"), new.get("spec"), "spec.")
    ]


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
