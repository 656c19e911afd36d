"""What a TensorRT engine's inspector JSON says about it: the precision its layers compute in, and its layers.

Shared by the builder (`runtimes.tensorrt.build`, which records it in engine.json) and the
runtime (`runtimes.tensorrt.runner`, which labels what it runs), so the runtime never
imports the builder; `layer_times` merges the inspector's layers with the times an IProfiler
reported (`runtimes.tensorrt.profiling`) into `runtimes.layers.LayerTime` rows. Pure Python:
testable without tensorrt.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping

from stages.runtimes.layers import LayerTime, medians, precision_word

if TYPE_CHECKING:
    from stages.runtimes.engine_info import Precision

# (pattern over the lower-cased type strings, label), lowest precision first
_PRECISION_WORDS: "tuple[tuple[str, Precision], ...]" = (
    (r"\bint8\b", "int8"),  # not "uint8" (a plain I/O type, not quantized compute)
    (r"\bfp8\b|\be4m3\b", "fp8"),
    (r"\bhalf\b|\bfp16\b", "fp16"),
    (r"\bbf16\b|\bbfloat16\b", "bf16"),
)


def precision_from_layers(layers: Any) -> "Precision":
    """'int8', 'fp8', 'fp16', 'bf16' or 'fp32': the lowest precision any layer computes in (inspector JSON).

    Only the "Layers" list is read (TensorRT 11 adds an "I/O Tensors" list whose
    "DataType" is the engine's I/O, not its compute). TensorRT 10 writes
    "Format/Datatype" per layer tensor, TensorRT 11 splits it into "Format" and
    "DataType"; every string under a key naming a type is read. Needs a
    DETAILED-verbosity build (LAYER_NAMES_ONLY gives names only, read as fp32).
    """
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and "type" in k.lower():
                    found.add(v.lower())
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(layers.get("Layers", layers) if isinstance(layers, dict) else layers)
    text = " ".join(found)
    for pattern, label in _PRECISION_WORDS:
        if re.search(pattern, text):
            return label
    return "fp32"


# -- per-layer rows: the inspector's layers, with the times an IProfiler reported -----------------------------------

_OTHER_PROFILE = re.compile(r"\[profile [1-9]\d*\]")  # the layers of optimization profiles other than 0
_TRT_WORDS = re.compile(r"[A-Za-z0-9]+")


def tensor_precision(tensor: Any) -> str:
    """A layer tensor's precision from its inspector record: TensorRT 11's "DataType" (Int8, Half, Float,
    BFloat16, FP8), else the type word inside TensorRT 10's "Format/Datatype" ("Thirty-two wide channel
    vectorized row major Int8 format", "Row major linear FP32"). UInt8 stays `uint8` (I/O, not quantized
    compute); '' when neither says."""
    if not isinstance(tensor, dict):
        return ""
    text = str(tensor.get("DataType") or tensor.get("Format/Datatype") or "")
    for word in _TRT_WORDS.findall(text):
        if word.lower() == "uint8":
            return "uint8"
        found = precision_word(word)
        if found:
            return found
    return ""


def _layer_record(record: Any, index: int) -> dict[str, Any]:
    """One inspector layer as {name, type, kernel, precision}: DETAILED records have ParameterType/LayerType,
    TacticName and tensors; LAYER_NAMES_ONLY gives the name alone."""
    if not isinstance(record, dict):
        return {"name": str(record), "type": "", "kernel": "", "precision": ""}
    tensors = [*(record.get("Inputs") or []), *(record.get("Outputs") or [])]
    precision = next((p for p in map(tensor_precision, tensors) if p), "")
    return {
        "name": str(record.get("Name", index)),
        "type": str(record.get("ParameterType") or record.get("LayerType") or ""),
        "kernel": str(record.get("TacticName") or record.get("LayerType") or ""),
        "precision": precision,
    }


def inspector_layers(inspector: Any) -> list[dict[str, Any]]:
    """The inspector JSON's layers of optimization profile 0, in execution order, as plain rows (TensorRT 10 and 11;
    DETAILED or LAYER_NAMES_ONLY); signal/wait layers (multi-stream bookkeeping) left out."""
    records = inspector.get("Layers", []) if isinstance(inspector, dict) else inspector or []
    rows = []
    for i, record in enumerate(records):
        row = _layer_record(record, i)
        kind = record.get("LayerType", "") if isinstance(record, dict) else ""
        if _OTHER_PROFILE.search(row["name"]) or str(kind).lower() in ("signal", "wait"):
            continue
        rows.append(row)
    return rows


def layer_times(
    inspector: Any, times: Mapping[str, list[float]] | None = None, runs: int | None = None
) -> tuple[list[LayerTime], list[str]]:
    """The engine's layers (`inspector_layers`) with the median of the last `runs` times an IProfiler reported for
    each (`times`: layer name -> [ms per inference]; None: no profiler ran, every time None), and notes.

    The profiler names layers as the inspector does; an engine built with profiling verbosity NONE reports
    decimal indices, matched to the inspector's order. A timed name the inspector lacks still counts (its type
    unknown); a layer the profiler never reported has no time."""
    rows = inspector_layers(inspector)
    notes: list[str] = []
    if rows and not any(r["type"] for r in rows):
        notes.append("the engine was built without detailed profiling verbosity: layer types and precisions unknown")
    timed = medians(times, runs) if times is not None else None
    if timed is not None and rows:
        names = {r["name"] for r in rows}
        by_index = {str(i): r["name"] for i, r in enumerate(rows)}
        timed = {(by_index.get(k, k) if k not in names else k): v for k, v in timed.items()}
    layers = []
    for r in rows:
        t = None if timed is None else timed.pop(r["name"], None)
        status = "executed" if timed is None or t is not None else "not_timed"
        layers.append(LayerTime(r["name"], r["type"], r["kernel"], r["precision"], t, status))
    for name, t in (timed or {}).items():
        layers.append(LayerTime(name, "", "", "", t))
    if timed is None:
        notes.append("no profiler ran: layer times unknown")
    return layers, notes
