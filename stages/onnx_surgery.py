"""onnx.surgery: a list of small graph edits with onnx-graphsurgeon, applied in order.

Each op is a plain function `(graph, arg, recipe_dir) -> graph` in `OPS`; the
recipe writes an op as a bare name (`cleanup`) or a one-key mapping
(`{rename_inputs: {input: images}}`). The result is checked against the input
model with ONNX Runtime, following renames and new static shapes, so an edit
that changes the numbers fails here and names the output it broke.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from pipeline.errors import did_you_mean
from pipeline.stage import InputSpec, KeyContext, OutputSpec, Stage, StageContext
from stages.common.params import SelfCheckParams

if TYPE_CHECKING:
    import onnx_graphsurgeon as gs

    from pipeline.schema import ModelSpec


# --- the ops -----------------------------------------------------------------------------------


def _cleanup(graph: "gs.Graph", arg: None, base: Path) -> "gs.Graph":
    """Drop nodes and tensors that no graph output depends on."""
    return graph.cleanup()


def _toposort(graph: "gs.Graph", arg: None, base: Path) -> "gs.Graph":
    return graph.toposort()


def _fold_constants(graph: "gs.Graph", arg: None, base: Path) -> "gs.Graph":
    """Evaluate constant subgraphs (with ONNX Runtime); follow with `cleanup` to drop what they leave."""
    return graph.fold_constants()


def _rename(which: str) -> Callable[["gs.Graph", dict[str, str], Path], "gs.Graph"]:
    def rename(graph: "gs.Graph", arg: dict[str, str], base: Path) -> "gs.Graph":
        tensors = {t.name: t for t in getattr(graph, which)}
        taken = set(graph.tensors())
        for old, new in arg.items():
            if old not in tensors:
                raise ValueError(f"rename_{which}: no graph {which[:-1]} {old!r} (has: {', '.join(tensors)})")
            if new in taken and new != old and new not in arg:
                raise ValueError(f"rename_{which}: name {new!r} is already used in the graph")
        for old, new in arg.items():
            tensors[old].name = new
        return graph

    return rename


def _set_dims(graph: "gs.Graph", arg: dict[str, list[int | str]], base: Path) -> "gs.Graph":
    """Set input/output shapes; intermediate shapes are cleared so runtimes re-infer them."""
    import onnx_graphsurgeon as gs

    boundary = {t.name: t for t in (*graph.inputs, *graph.outputs)}
    for name, shape in arg.items():
        if name not in boundary:
            raise ValueError(f"set_dims: {name!r} is not a graph input or output (has: {', '.join(boundary)})")
        tensor = boundary[name]
        if tensor.shape is not None and len(tensor.shape) != len(shape):
            raise ValueError(f"set_dims: {name!r} has rank {len(tensor.shape)}, got shape {shape}")
        tensor.shape = list(shape)
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and tensor.name not in boundary:
            tensor.shape = None
    return graph


def _remove_node(graph: "gs.Graph", arg: str, base: Path) -> "gs.Graph":
    """Remove one node; its consumers (or the graph output) read its first input instead."""
    matches = [n for n in graph.nodes if n.name == arg]
    if len(matches) != 1:
        found = "no node" if not matches else f"{len(matches)} nodes"
        raise ValueError(f"remove_node: {found} named {arg!r}")
    node = matches[0]
    if not node.inputs or not node.outputs:
        raise ValueError(f"remove_node: {arg!r} ({node.op}) needs an input and an output to reconnect")
    source, out = node.inputs[0], node.outputs[0]
    if any(t.outputs or t in graph.outputs for t in node.outputs[1:]):
        raise ValueError(f"remove_node: {arg!r} has more than one used output; only the first can be reconnected")
    for consumer in list(out.outputs):
        for i, t in enumerate(consumer.inputs):
            if t is out:
                consumer.inputs[i] = source
    if out in graph.outputs:  # keep the graph's output name: the producer of `source` now writes it
        if not source.inputs or source in graph.inputs or source in graph.outputs:
            raise ValueError(
                f"remove_node: {arg!r} connects a graph input or constant straight to graph "
                f"output {out.name!r}; there is no producer to take over that name"
            )
        graph.outputs[graph.outputs.index(out)] = source
        node.outputs.clear()
        source.name = out.name
        source.dtype = source.dtype or out.dtype
        source.shape = source.shape if source.shape is not None else out.shape
    node.inputs.clear()
    node.outputs.clear()
    graph.nodes.remove(node)
    return graph


def _python(graph: "gs.Graph", arg: str, base: Path) -> "gs.Graph":
    """Call user code `module:function` (graph -> graph), resolved from the recipe's directory."""
    import onnx_graphsurgeon as gs

    from stages.common.refs import callable_from_ref

    result = callable_from_ref(arg, base)(graph)
    if not isinstance(result, gs.Graph):
        raise ValueError(f"python op {arg}: returned {type(result).__name__}, expected the gs.Graph")
    return result


OPS: dict[str, Callable[[Any, Any, Path], Any]] = {
    "cleanup": _cleanup,
    "toposort": _toposort,
    "fold_constants": _fold_constants,
    "rename_inputs": _rename("inputs"),
    "rename_outputs": _rename("outputs"),
    "set_dims": _set_dims,
    "remove_node": _remove_node,
    "python": _python,
}


# --- the params: each op validated, written back in the recipe's own form ----------------------


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    op: str
    arg: Any = None

    @model_serializer
    def _recipe_form(self) -> Any:
        return self.op if self.arg is None else {self.op: self.arg}


class _NoArg(_Op):
    op: Literal["cleanup", "toposort", "fold_constants"]
    arg: None = None


class _Rename(_Op):
    op: Literal["rename_inputs", "rename_outputs"]
    arg: Annotated[dict[str, str], Field(min_length=1)]

    @field_validator("arg")
    @classmethod
    def _distinct(cls, v: dict[str, str]) -> dict[str, str]:
        if len(set(v.values())) != len(v):
            raise ValueError("two tensors renamed to the same name")
        return v


class _SetDims(_Op):
    op: Literal["set_dims"]
    arg: Annotated[dict[str, list[int | str]], Field(min_length=1)]

    @field_validator("arg")
    @classmethod
    def _dims(cls, v: dict[str, list[int | str]]) -> dict[str, list[int | str]]:
        for name, shape in v.items():
            for i, d in enumerate(shape):
                if isinstance(d, int) and d < 1 or isinstance(d, str) and not d:
                    raise ValueError(f"{name}[{i}]: expected a positive int or a dim name, got {d!r}")
        return v


class _RemoveNode(_Op):
    op: Literal["remove_node"]
    arg: Annotated[str, Field(min_length=1)]


class _Python(_Op):
    op: Literal["python"]
    arg: Annotated[str, Field(pattern=r"^[^:]+:[A-Za-z_][\w.]*$")]


SurgeryOp = Annotated[Union[_NoArg, _Rename, _SetDims, _RemoveNode, _Python], Field(discriminator="op")]


class OnnxSurgeryParams(SelfCheckParams):
    ops: list[SurgeryOp] = Field(
        default_factory=list,
        description=(
            "edits applied in order: cleanup | toposort | fold_constants | {rename_inputs: {old: new}} | "
            "{rename_outputs: {old: new}} | {set_dims: {tensor: [1, 3, 224, 224]}} | {remove_node: NAME} | "
            "{python: 'module:function'} (gs.Graph -> gs.Graph)"
        ),
    )
    check: bool = Field(True, description="compare with the input model (renames followed; set_dims shapes used)")

    @field_validator("ops", mode="before")
    @classmethod
    def _tagged(cls, v: Any) -> Any:
        """`cleanup` -> {op: cleanup}; `{set_dims: {...}}` -> {op: set_dims, arg: {...}}."""
        if not isinstance(v, list):
            return v
        out = []
        for i, item in enumerate(v):
            if isinstance(item, str):
                item = {"op": item}
            elif isinstance(item, dict) and "op" not in item:
                if len(item) != 1:
                    raise ValueError(f"ops[{i}]: an op is a name or a mapping with one key, got keys {sorted(item)}")
                ((name, arg),) = item.items()
                item = {"op": name} if arg is None else {"op": name, "arg": arg}
            if isinstance(item, dict) and isinstance(item.get("op"), str) and item["op"] not in OPS:
                raise ValueError(
                    f"ops[{i}]: unknown op {item['op']!r}{did_you_mean(item['op'], list(OPS))} (ops: {', '.join(OPS)})"
                )
            out.append(item)
        return out


# --- the kind ----------------------------------------------------------------------------------


class OnnxSurgery(Stage[OnnxSurgeryParams]):
    kind = "onnx.surgery"
    version = "1"
    summary = "Edit an ONNX graph with onnx-graphsurgeon: cleanup, renames, static dims, node removal, python"
    inputs = {"model": InputSpec(description="the .onnx file to edit")}
    outputs = {"model": OutputSpec("model.onnx", description="the edited model, weights inline")}
    packages = ("onnx", "onnx-graphsurgeon", "onnxruntime")
    extra = "onnx"
    model_fields = ("tensors", "dims")

    def fingerprint(self, params: OnnxSurgeryParams, model: "ModelSpec | None", keys: KeyContext) -> dict[str, Any]:
        """The code of every python op: editing it must rerun the surgery."""
        refs = [op.arg for op in params.ops if op.op == "python"]
        return {"python_ops": [keys.code_digest(ref) for ref in refs]} if refs else {}

    def run(self, ctx: StageContext[OnnxSurgeryParams]) -> dict[str, Any]:
        import onnx_graphsurgeon as gs

        from stages.runtimes.onnx import io as onnxio

        p = ctx.params
        source = ctx.path("model")
        original = onnxio.load_onnx(source)
        graph = gs.import_onnx(original)
        shapes = dict(onnxio.input_shapes(ctx.model, "opt")) if ctx.model is not None else {}
        renames: dict[str, str] = {}  # reference name -> current name
        for i, op in enumerate(p.ops):
            try:
                graph = OPS[op.op](graph, op.arg, ctx.recipe_dir)
            except ValueError as exc:
                raise ValueError(f"ops[{i}] {op.op}: {exc}") from None
            if op.op in ("rename_inputs", "rename_outputs"):
                renames = _compose(renames, op.arg)
            elif op.op == "set_dims":
                _follow_set_dims(shapes, renames, op.arg, ctx.model)
        edited = gs.export_onnx(graph)
        for field in ("doc_string", "domain", "model_version"):
            setattr(edited, field, getattr(original, field))
        edited.metadata_props.extend(original.metadata_props)
        out = ctx.output("model")
        onnxio.save_onnx(edited, out)
        summary: dict[str, Any] = {
            "ops": len(p.ops),
            "nodes_before": len(original.graph.node),
            "nodes_after": len(edited.graph.node),
        }
        del original, edited, graph
        if p.check:
            session = onnxio.session_from_onnx(source)
            feeds = onnxio.random_inputs(session, shapes, p.check_seed)
            try:
                diffs = onnxio.check_agreement(source, out, feeds, p.check_atol, p.check_rtol, renames)
            except ValueError as exc:
                raise ValueError(f"{exc} (if the edit is meant to change this, set check: false)") from None
            summary["check_max_abs"] = max(diffs.values(), default=0.0)
        return summary


def _compose(renames: dict[str, str], step: dict[str, str]) -> dict[str, str]:
    """Chain a new rename onto the reference -> current map."""
    current = {ref: step.get(cur, cur) for ref, cur in renames.items()}
    known = set(renames.values())
    current.update({old: new for old, new in step.items() if old not in known and old not in current})
    return current


def _follow_set_dims(
    shapes: dict[str, tuple[int, ...]],
    renames: dict[str, str],
    arg: dict[str, list[int | str]],
    model: "ModelSpec | None",
) -> None:
    """Check at the new static sizes: ints as given, named dims at their opt (or the old size)."""
    back = {cur: ref for ref, cur in renames.items()}
    for name, dims in arg.items():
        ref = back.get(name, name)
        if ref not in shapes:
            continue  # an output, or an input the recipe does not describe
        old = shapes[ref]
        shapes[ref] = tuple(
            d if isinstance(d, int) else model.dims[d].opt if model is not None and d in model.dims else old[i]
            for i, d in enumerate(dims)
        )
