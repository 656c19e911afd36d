"""`matrix:` stages, as DVC 3 writes them: one stage declared, one stage per combination built.

    build:
      matrix: {precision: [fp16, int8], target: [{gpu: T4, ...}, {gpu: L4, ...}]}
      name: ${item.precision}-${item.target.gpu}     # optional; DVC's default names scalars by value
      uses: build.tensorrt
      from: quantize_${item.precision}
      with: {target: ${item.target}}

expands, before anything is validated, into `build@fp16-T4`, `build@fp16-L4`, ... (DVC's `stage@suffix`). A
field that is one `${item.k}` takes the value itself (a mapping stays a mapping); inside a longer string the value
is written as text. Scalars name a variant by value, joined with `-` in the matrix's key order; a mapping names it
by its own `name` key or through the stage's `name:` template (DVC#10903), never by position (`target0`).

References are rewritten here too, so the rest of the loader sees plain stage names:
- `build@*` (a fan-in) is the list of every variant, for an input that takes many (`InputSpec.many`);
- a bare `build` from a stage whose own matrix covers build's keys reads the variant with the same values
  (variant to variant: `check@fp16-T4` reads `build@fp16-T4`); from anywhere else it is an error naming the
  variants, as is an unknown `${item.x}`, an empty list, or a name two variants share.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import RecipeError, did_you_mean
from pipeline.recipe.yamlio import LineMap, line_for

SEP = "@"
ALL = "*"
_ITEM = re.compile(r"\$\{\s*item((?:\.[A-Za-z0-9_-]+)*)\s*\}")
_SUFFIX = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Variant:
    name: str  # build@fp16-T4
    item: dict[str, Any]  # {"precision": "fp16", "target": {...}}


def base_of(name: str) -> str:
    """A variant's matrix stage (`build@fp16` -> `build`); a plain stage's own name."""
    return name.partition(SEP)[0]


def expand(stages: Any, lines: LineMap, path: Path) -> tuple[Any, dict[str, list[Variant]]]:
    """The raw `stages:` mapping with every matrix stage replaced by its variants (in place of it, in order) and
    every reference to one rewritten; `lines` gains each variant's lines. Also: matrix stage -> its variants."""
    if not isinstance(stages, dict):
        return stages, {}
    matrices: dict[str, list[Variant]] = {}
    out: dict[str, Any] = {}
    for name, body in stages.items():
        at = ("stages", name)
        if not isinstance(body, dict) or "matrix" not in body:
            if isinstance(body, dict) and not (isinstance(name, str) and SEP in name):
                _no_item(body, at, lines, path)
            out[name] = body
            continue
        variants = _variants(name, body, lines, path)
        matrices[name] = variants
        template = {k: v for k, v in body.items() if k not in ("matrix", "name")}
        for variant in variants:
            out[variant.name] = _interpolate(template, variant.item, at, lines, path)
            _copy_lines(lines, at, ("stages", variant.name))
    items = {v.name: v.item for variants in matrices.values() for v in variants}
    for name, body in out.items():
        if isinstance(body, dict):
            _rewrite_refs(body, items.get(name), matrices, ("stages", name), lines, path)
    return out, matrices


# -- variants ------------------------------------------------------------------------------------------------
def _variants(name: str, body: dict[str, Any], lines: LineMap, path: Path) -> list[Variant]:
    at = ("stages", name, "matrix")
    matrix = body["matrix"]
    if not isinstance(matrix, dict) or not matrix:
        raise RecipeError(path, line_for(lines, at), _dotted(at), "expected a mapping of names to lists of values")
    for key, values in matrix.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise RecipeError(path, line_for(lines, at + (key,)), _dotted(at + (key,)), "matrix keys are identifiers")
        if not isinstance(values, list):
            raise RecipeError(path, line_for(lines, at + (key,)), _dotted(at + (key,)), "expected a list of values")
        if not values:
            raise RecipeError(path, line_for(lines, at + (key,)), _dotted(at + (key,)), "empty list: no variants")
    template = body.get("name")
    if template is not None and not isinstance(template, str):
        where = ("stages", name, "name")
        raise RecipeError(path, line_for(lines, where), _dotted(where), "expected a string such as ${item.gpu}")
    keys = list(matrix)
    variants: list[Variant] = []
    seen: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*(matrix[k] for k in keys)):
        item = dict(zip(keys, combo))
        suffix = _suffix(name, item, template, lines, path)
        if suffix in seen:
            where = ("stages", name, "name") if template is not None else at
            raise RecipeError(
                path, line_for(lines, where), _dotted(where), f"two variants are both named {name}{SEP}{suffix}"
            )
        seen[suffix] = item
        variants.append(Variant(f"{name}{SEP}{suffix}", item))
    return variants


def _suffix(name: str, item: dict[str, Any], template: str | None, lines: LineMap, path: Path) -> str:
    where: tuple[Any, ...]
    if template is not None:
        where = ("stages", name, "name")
        suffix = str(_interpolate(template, item, where, lines, path))
        what = f"name {template!r} gives {suffix!r}"
    else:
        parts = []
        for key, value in item.items():
            if isinstance(value, dict) and isinstance(value.get("name"), (str, int)) and not isinstance(value, bool):
                parts.append(str(value["name"]))
            elif isinstance(value, (dict, list)):
                where = ("stages", name, "matrix", key)
                raise RecipeError(
                    path,
                    line_for(lines, where),
                    _dotted(where),
                    f"its values are {'mappings' if isinstance(value, dict) else 'lists'}: give each a `name`, "
                    f"or name the variants with `name:` (such as ${{item.{key}.gpu}})",
                )
            else:
                parts.append("true" if value is True else "false" if value is False else str(value))
        suffix, where = "-".join(parts), ("stages", name, "matrix")
        what = f"values {parts} name a variant {suffix!r}"
    if not _SUFFIX.match(suffix):
        raise RecipeError(
            path,
            line_for(lines, where),
            _dotted(where),
            f"{what}: a variant's name takes letters, digits, _ and - only (set `name:` to choose one)",
        )
    return suffix


# -- ${item.x} -----------------------------------------------------------------------------------------------
def _interpolate(value: Any, item: dict[str, Any], at: tuple[Any, ...], lines: LineMap, path: Path) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, item, at + (k,), lines, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, item, at + (i,), lines, path) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _ITEM.fullmatch(value.strip())
    if whole:
        return _lookup(whole.group(1), item, at, lines, path)

    def text(match: re.Match[str]) -> str:
        found = _lookup(match.group(1), item, at, lines, path)
        if isinstance(found, (dict, list)):
            raise RecipeError(
                path,
                line_for(lines, at),
                _dotted(at),
                f"{match.group(0)} is a {'mapping' if isinstance(found, dict) else 'list'}: it can only be a "
                "whole value, not part of a string",
            )
        return "true" if found is True else "false" if found is False else str(found)

    result = _ITEM.sub(text, value)
    if "${" in result:
        raise RecipeError(path, line_for(lines, at), _dotted(at), f"{value!r}: only ${{item.KEY}} is interpolated")
    return result


def _lookup(dotted: str, item: dict[str, Any], at: tuple[Any, ...], lines: LineMap, path: Path) -> Any:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise RecipeError(path, line_for(lines, at), _dotted(at), "${item} needs a key: ${item.KEY}")
    node: Any = item
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = list(node) if isinstance(node, dict) else []
            what = "matrix key" if i == 0 else f"key of item.{'.'.join(parts[:i])}"
            hint = f" ({'matrix keys' if i == 0 else 'keys'}: {', '.join(map(str, known))})" if known else ""
            raise RecipeError(
                path,
                line_for(lines, at),
                _dotted(at),
                f"${{item.{'.'.join(parts)}}}: no {what} {part!r}{did_you_mean(part, known)}{hint}",
            )
        node = node[part]
    return node


def _no_item(body: dict[str, Any], at: tuple[Any, ...], lines: LineMap, path: Path) -> None:
    """A stage that declares no matrix has no item: `${item.x}` in it is a mistake, not a literal."""
    for key, value in body.items():
        where = at + (key,)
        if isinstance(value, dict):
            _no_item(value, where, lines, path)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, dict):
                    _no_item(v, where + (i,), lines, path)
                elif isinstance(v, str) and _ITEM.search(v):
                    raise RecipeError(path, line_for(lines, where + (i,)), _dotted(where + (i,)), _NO_MATRIX)
        elif isinstance(value, str) and _ITEM.search(value):
            raise RecipeError(path, line_for(lines, where), _dotted(where), _NO_MATRIX)


_NO_MATRIX = "uses ${item...} but the stage declares no matrix"


# -- references ------------------------------------------------------------------------------------------------
def _rewrite_refs(
    body: dict[str, Any],
    item: dict[str, Any] | None,
    matrices: dict[str, list[Variant]],
    at: tuple[Any, ...],
    lines: LineMap,
    path: Path,
) -> None:
    if isinstance(body.get("from"), str):
        if _many_refs(body["from"], matrices, at + ("from",), lines, path) is not None:
            where = at + ("from",)
            message = f"takes one artifact: a fan-in ({body['from']}) is for an input that takes many"
            raise RecipeError(path, line_for(lines, where), _dotted(where), message)
        body["from"] = _one_ref(body["from"], item, matrices, at + ("from",), lines, path)
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        return
    for key, ref in inputs.items():
        where = at + ("inputs", key)
        if isinstance(ref, str):
            inputs[key] = _many_refs(ref, matrices, where, lines, path) or _one_ref(
                ref, item, matrices, where, lines, path
            )
        elif isinstance(ref, list):
            rewritten: list[Any] = []
            for i, r in enumerate(ref):
                if not isinstance(r, str):
                    rewritten.append(r)
                    continue
                many = _many_refs(r, matrices, where + (i,), lines, path)
                rewritten.extend(many or [_one_ref(r, item, matrices, where + (i,), lines, path)])
            inputs[key] = rewritten


def _many_refs(
    ref: str, matrices: dict[str, list[Variant]], at: tuple[Any, ...], lines: LineMap, path: Path
) -> list[str] | None:
    """`build@*` or `build@*.report` -> every variant's reference; None for any other reference."""
    head, dot, output = ref.partition(".")
    stage, sep, suffix = head.partition(SEP)
    if not sep or suffix != ALL:
        return None
    if stage not in matrices:
        raise RecipeError(
            path,
            line_for(lines, at),
            _dotted(at),
            f"{ref!r}: {stage!r} is not a matrix stage{did_you_mean(stage, list(matrices))}",
        )
    return [v.name + dot + output for v in matrices[stage]]


def _one_ref(
    ref: str,
    item: dict[str, Any] | None,
    matrices: dict[str, list[Variant]],
    at: tuple[Any, ...],
    lines: LineMap,
    path: Path,
) -> str:
    """A bare reference to a matrix stage, made the variant with this stage's values."""
    head, dot, output = ref.partition(".")
    if head not in matrices:
        return ref
    variants = matrices[head]
    keys = list(variants[0].item)
    if item is not None and all(k in item for k in keys):
        for v in variants:
            if all(v.item[k] == item[k] for k in keys):
                return v.name + dot + output
    names = ", ".join(v.name for v in variants[:4]) + (", ..." if len(variants) > 4 else "")
    why = "" if item is None else f" for these values of {', '.join(keys)}" if all(k in item for k in keys) else ""
    raise RecipeError(
        path,
        line_for(lines, at),
        _dotted(at),
        f"{head!r} is a matrix stage ({names}){why}: name one variant, all of them ({head}{SEP}{ALL}, for an "
        f"input that takes many), or give this stage a matrix over {', '.join(keys)}",
    )


def _copy_lines(lines: LineMap, source: tuple[Any, ...], dest: tuple[Any, ...]) -> None:
    for loc, line in list(lines.items()):
        if loc[: len(source)] == source:
            lines[dest + loc[len(source) :]] = line


def _dotted(at: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in at)
