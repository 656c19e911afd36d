"""The reference the README embeds and `pipeline stages` prints: each stage kind, the `model:` section and
every dataset kind's `data:` entry, rendered from their schemas (so the docs cannot drift from the code)."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pipeline.stage import Stage


def kind_summary(kind: Any) -> str:
    import sys

    if kind.summary:
        return kind.summary
    doc = kind.__doc__ if kind.__doc__ and kind.__doc__ is not Stage.__doc__ else sys.modules[kind.__module__].__doc__
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ")


def stage_reference(registry: Any) -> str:
    """Every registered kind's description, in name order (the README embeds this verbatim)."""
    return "\n\n".join(describe_kind(registry.get(name)) for name in registry.names())


def describe_kind(kind: Any) -> str:
    """A Markdown description of a kind: inputs, outputs and params (feeds the README's stage reference)."""
    lines = [f"### `{kind.kind}`", "", kind_summary(kind), ""]
    if kind.inputs:
        lines.append(
            "Inputs: "
            + ", ".join(
                f"`{n}` ({s.kind}{', optional' if s.optional else ''}{', many' if s.many else ''})"
                for n, s in kind.inputs.items()
            )
        )
    lines.append("Outputs: " + ", ".join(f"`{n}` (`{s.path}`)" for n, s in kind.outputs.items()))
    if kind.extra:
        lines.append(f"Needs: `pip install '.[{kind.extra}]'`")
    return "\n".join(lines + ["", fields_table(kind.Params, "param")])


def fields_table(model: Any, what: str = "key") -> str:
    """A pydantic model's fields as a Markdown table: name, type, default, description."""
    from pydantic import BaseModel

    lines = [f"| {what} | type | default | description |", "|---|---|---|---|"]
    for name, f in model.model_fields.items():
        if name == "kind" and "Literal" in str(f.annotation):
            continue  # a dataset's tag: its heading says it
        value = None if f.is_required() else f.get_default(call_default_factory=True)
        default = "required" if f.is_required() else "see below" if isinstance(value, BaseModel) else repr(value)
        if get_origin(f.annotation) is Literal:
            typ = " | ".join(repr(v) for v in get_args(f.annotation))
        else:
            typ = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
        typ = typ.replace("pipeline.schema.", "").replace("|", "\\|")
        desc = (f.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{f.alias or name}` | `{typ}` | `{default}` | {desc} |")
    return "\n".join(lines)


def sections_reference(registry: Any = None) -> str:
    """The recipe's `model:` section and every dataset kind's `data:` entry, from their schemas (the README
    embeds this verbatim). Kinds sharing one spec (`npz`, `npy`) share a heading."""
    from pydantic import BaseModel

    from pipeline.recipe.registry import Registry
    from pipeline.schema import DimRange, ModelSpec, TensorSpec

    registry = registry or Registry()
    parts = [
        "### `model:`",
        "",
        (ModelSpec.__doc__ or "").strip(),
        "",
        fields_table(ModelSpec),
        "",
        "Each `tensors.NAME`:",
        "",
        fields_table(TensorSpec),
        "",
        "Each `dims.NAME`:",
        "",
        fields_table(DimRange),
    ]
    specs: dict[type[BaseModel], list[str]] = {}
    for name in registry.datasets.names():
        specs.setdefault(registry.datasets.get(name).Spec, []).append(name)
    for spec, kinds in specs.items():
        heading = " / ".join(f"`{k}`" for k in kinds)
        parts += [
            "",
            f"### `data.NAME` with `kind:` {heading}",
            "",
            (spec.__doc__ or "").strip(),
            "",
            fields_table(spec),
        ]
        for field_name, f in spec.model_fields.items():
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
                parts += ["", f"`{field_name}:`", "", fields_table(f.annotation)]
    return "\n".join(parts)
