"""2:4 structured sparsity of ONNX weights: where the weights are, magnitude pruning, and the verifier.

The pattern is the one TensorRT's sparse kernels read (BuilderFlag.SPARSE_WEIGHTS,
`trtexec --sparsity=enable`): in every group of 4 consecutive weights along the
layer's INPUT (reduction) dimension, at most 2 are nonzero.

- Conv, weight [K, C/group, R, S...]: groups run along C, for each (k, r, s).
- MatMul with a constant B [..., K, N]: along K (axis -2); a constant A [..., M, K]: along K (axis -1).
- Gemm: B is [K, N] (transB 0, axis 0) or [N, K] (transB 1, axis 1).

A weight is found as an initializer feeding the layer directly, or through
Transpose (the axis is mapped back through `perm`) and DequantizeLinear (a Q/DQ
model: an INT8 weight counts as zero where it equals the zero point, which is
how quantize.qdq's INT8 ONNX reaches build.tensorrt; with `weights: qdq_pair`
the float weight behind QuantizeLinear/DequantizeLinear is read as it is). Weights that are
not initializers (Constant nodes, activations), live in subgraphs, or whose
input dim is not a multiple of 4 (TensorRT's pattern check assumes C % 4 == 0)
are reported as ineligible with the reason, never pruned.

`weight_sites` finds them, `prune_2_4` keeps the 2 largest |w| of each group
(ties: the lower index, so the bytes are deterministic), `verify` reports any
ONNX weight by weight (the verifier build.tensorrt and the tests use) and
`require_2_4` raises naming the first weight that breaks the pattern. onnx is
imported inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

if TYPE_CHECKING:
    import onnx

GROUP, KEEP = 4, 2
OP_TYPES = ("MatMul", "Gemm", "Conv")
_PASS_THROUGH = ("Transpose", "DequantizeLinear", "QuantizeLinear", "Identity")


@dataclass(frozen=True)
class WeightSite:
    """The weight of one MatMul/Gemm/Conv node: its initializer, the input axis in the initializer's own layout
    and the nodes between them; `reason` says why it cannot carry 2:4 sparsity (None: it can)."""

    node: str
    op: str
    weight: str | None  # the initializer's name (None: the weight is not a constant initializer)
    shape: tuple[int, ...] = ()
    axis: int = -1  # the input (reduction) axis of the initializer
    via: tuple[str, ...] = ()  # op types between initializer and node, nearest the initializer first
    dequantize: str | None = None  # the DequantizeLinear node's name, for a Q/DQ weight
    reason: str | None = None
    chain: tuple[str, ...] = field(default=(), compare=False)  # tensors from the initializer to the node's input

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 0

    @property
    def channels(self) -> int:
        return self.shape[self.axis] if self.shape else 0


def _load(model: "onnx.ModelProto | Path | str") -> "onnx.ModelProto":
    if isinstance(model, (str, Path)):
        from stages.runtimes.onnx.io import load_onnx

        return load_onnx(model)
    return model


def _name(node: "onnx.NodeProto", index: int) -> str:
    return node.name or f"{node.op_type}#{index}"


def _attr(node: "onnx.NodeProto", name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _input_axis(node: "onnx.NodeProto", slot: int, rank: int) -> int | None:
    """The reduction axis of input `slot` of `node` (in the layout the node sees), None when it has none."""
    if node.op_type == "Conv":
        return 1 if slot == 1 else None
    if node.op_type == "Gemm":
        if slot != 1:
            return None
        return 1 if _attr(node, "transB", 0) else 0
    if node.op_type == "MatMul":
        if rank < 2:
            return None
        return rank - 2 if slot == 1 else rank - 1
    return None


def weight_sites(model: "onnx.ModelProto | Path | str", op_types: Iterable[str] = OP_TYPES) -> list[WeightSite]:
    """Every MatMul/Gemm/Conv node of the top-level graph with its weight, in graph order."""
    model = _load(model)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    wanted = set(op_types)
    sites: list[WeightSite] = []
    for index, node in enumerate(graph.node):
        if node.op_type not in wanted:
            continue
        name = _name(node, index)
        slots = [1, 0] if node.op_type == "MatMul" else [1]
        traced = None
        for slot in slots:
            if slot < len(node.input) and node.input[slot]:
                traced = _trace(node.input[slot], inits, producer)
                if traced is not None:
                    break
        if traced is None:
            sites.append(WeightSite(name, node.op_type, None, reason="the weight is not a constant initializer"))
            continue
        init_name, perms, via, dq, chain = traced
        if via and via[0] == "QuantizeLinear":
            dq = None  # a float weight quantized in the graph (a Q/DQ pair): its zeros dequantize to exactly zero
        shape = tuple(int(d) for d in inits[init_name].dims)
        axis = _input_axis(node, slot, len(shape))
        if axis is None:
            flat = f"{len(shape)}-D weight: no input dim to group along"
            sites.append(WeightSite(name, node.op_type, init_name, shape, -1, via, dq, flat, chain))
            continue
        for perm in perms:  # nearest the node first: out dim i of a Transpose is its input dim perm[i]
            axis = perm[axis] if perm else len(shape) - 1 - axis
        reason = _ineligible(shape, axis)
        if dq is not None and via[0] != "DequantizeLinear":
            reason = "the DequantizeLinear is not applied to the initializer directly"
        sites.append(WeightSite(name, node.op_type, init_name, shape, axis, via, dq, reason, chain))
    return sites


def _trace(
    tensor: str, inits: dict, producer: dict
) -> tuple[str, list[tuple[int, ...]], tuple[str, ...], str | None, tuple[str, ...]] | None:
    """Follow `tensor` back through Transpose/DequantizeLinear/Identity to an initializer:
    (initializer, Transpose perms nearest the node first, op types nearest the initializer first, the DQ node,
    the tensors from the initializer to the node's input); None when it does not end at one."""
    perms: list[tuple[int, ...]] = []
    via: list[str] = []
    chain = [tensor]
    dq = None
    while tensor not in inits:
        node = producer.get(tensor)
        if node is None or node.op_type not in _PASS_THROUGH or len(via) >= 4:
            return None
        if node.op_type == "Transpose":
            perms.append(tuple(_attr(node, "perm", ())))
        elif node.op_type == "DequantizeLinear":
            if dq is not None:
                return None
            dq = node.name or node.output[0]
        via.append(node.op_type)
        tensor = node.input[0]
        chain.append(tensor)
    return tensor, perms, tuple(reversed(via)), dq, tuple(reversed(chain))


def _ineligible(shape: tuple[int, ...], axis: int) -> str | None:
    channels = shape[axis]
    if channels % GROUP:
        return f"input dim {channels} (axis {axis}) is not a multiple of {GROUP}"
    return None


# -- arrays -----------------------------------------------------------------------------------------------------
def _groups(values: np.ndarray, axis: int) -> np.ndarray:
    """`values` with `axis` moved last and split into groups of 4: shape (..., C/4, 4)."""
    moved = np.moveaxis(values, axis, -1)
    return moved.reshape(*moved.shape[:-1], moved.shape[-1] // GROUP, GROUP)


def keep_mask(values: np.ndarray, axis: int) -> np.ndarray:
    """True at the 2 largest |values| of each group of 4 along `axis` (ties: the lower index), in `values`' layout."""
    if values.shape[axis] % GROUP:
        raise ValueError(f"dim {values.shape[axis]} of axis {axis} is not a multiple of {GROUP}")
    g = _groups(np.abs(values.astype(np.float64)), axis)
    order = np.argsort(-g, axis=-1, kind="stable")[..., :KEEP]
    mask = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    moved_shape = np.moveaxis(values, axis, -1).shape
    return np.moveaxis(mask.reshape(moved_shape), -1, axis)


def prune_2_4(values: np.ndarray, axis: int) -> np.ndarray:
    """Magnitude 2:4 pruning: `values` with the 2 smallest |w| of every group of 4 along `axis` set to zero."""
    return np.where(keep_mask(values, axis), values, np.zeros_like(values))


def is_2_4(values: np.ndarray, axis: int) -> bool:
    """Whether every group of 4 along `axis` holds at most 2 nonzeros (False when the dim is not a multiple of 4)."""
    return values.shape[axis] % GROUP == 0 and bad_groups(values, axis) == 0


def bad_groups(values: np.ndarray, axis: int) -> int:
    """How many groups of 4 along `axis` hold more than 2 nonzeros."""
    return int(((_groups(values, axis) != 0).sum(axis=-1) > KEEP).sum())


# -- weights in a model ------------------------------------------------------------------------------------------
def effective_values(model: "onnx.ModelProto", site: WeightSite) -> np.ndarray:
    """The weight as the layer sees it, in the initializer's layout: the initializer, or for a Q/DQ weight the
    quantized values minus the zero point (zero exactly where the dequantized weight is zero)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    if site.weight is None:
        raise ValueError(f"node {site.node}: no constant weight")
    values = numpy_helper.to_array(inits[site.weight])
    if site.dequantize is None:
        return values
    zero = _zero_point(model, site, values)
    return values.astype(np.int64) - zero


def _dq_node(model: "onnx.ModelProto", site: WeightSite) -> "onnx.NodeProto":
    nodes = (n for n in model.graph.node if n.op_type == "DequantizeLinear")
    return next(n for n in nodes if site.dequantize in (n.name, n.output[0]))


def _zero_point(model: "onnx.ModelProto", site: WeightSite, values: np.ndarray) -> np.ndarray:
    """The DQ node's zero point broadcast to the weight's shape (0 when it has none)."""
    return _dq_operand(model, site, values, 2, "zero point", np.int64)


def _scale(model: "onnx.ModelProto", site: WeightSite, values: np.ndarray) -> np.ndarray:
    """The DQ node's scale broadcast to the weight's shape."""
    return _dq_operand(model, site, values, 1, "scale", np.float64)


def _dq_operand(
    model: "onnx.ModelProto", site: WeightSite, values: np.ndarray, index: int, what: str, dtype: type
) -> np.ndarray:
    """Input `index` of the weight's DequantizeLinear (a per-tensor or per-axis initializer) broadcast to the
    weight's shape; a missing optional input (the zero point) is 0."""
    from onnx import numpy_helper

    node = _dq_node(model, site)
    if _attr(node, "block_size", 0):
        raise ValueError(f"node {site.node}: blocked DequantizeLinear (block_size) is not supported")
    if len(node.input) <= index or not node.input[index]:
        return np.zeros(values.shape, dtype=dtype)
    inits = {t.name: t for t in model.graph.initializer}
    if node.input[index] not in inits:
        raise ValueError(f"node {site.node}: the {what} of {node.name or node.output[0]} is not an initializer")
    operand: np.ndarray = numpy_helper.to_array(inits[node.input[index]]).astype(dtype)
    if operand.ndim == 1 and values.ndim > 1:
        axis = _attr(node, "axis", 1) % values.ndim
        operand = operand.reshape([-1 if i == axis else 1 for i in range(values.ndim)])
    return np.broadcast_to(operand, values.shape)


def verify(model: "onnx.ModelProto | Path | str", op_types: Iterable[str] = OP_TYPES) -> list[dict[str, Any]]:
    """The verifier, for any ONNX: per MatMul/Gemm/Conv weight, whether it is 2:4 along its input dim.

    Each entry: node, op, weight, shape, axis, via, `status` (`sparse`: 2:4 holds; `dense`: it does not, with
    `bad_groups`; `ineligible`: with `reason`) and `zeros` (the fraction of zero weights)."""
    model = _load(model)
    out = []
    for site in weight_sites(model, op_types):
        entry: dict[str, Any] = {"node": site.node, "op": site.op, "weight": site.weight, "shape": list(site.shape)}
        reason = site.reason
        if site.weight is not None:
            entry.update(axis=site.axis, via=list(site.via))
            try:
                values = effective_values(model, site)
            except ValueError as exc:  # a DQ this module cannot read (blocked, non-constant zero point)
                reason = reason or str(exc)
            else:
                entry["zeros"] = round(float((values == 0).mean()), 6) if values.size else 0.0
        if reason is not None:
            entry.update(status="ineligible", reason=reason)
        else:
            bad = bad_groups(values, site.axis)
            entry.update(status="sparse" if bad == 0 else "dense", **({"bad_groups": bad} if bad else {}))
        out.append(entry)
    return out


def count_sparse(model: "onnx.ModelProto | Path | str") -> tuple[int, int]:
    """(weights that are 2:4 along their input dim, MatMul/Gemm/Conv weights checked): what TensorRT's
    SPARSE_WEIGHTS flag can use."""
    report = verify(model)
    return sum(e["status"] == "sparse" for e in report), sum(e["weight"] is not None for e in report)


def require_2_4(model: "onnx.ModelProto | Path | str", weights: Iterable[str] | None = None) -> None:
    """ValueError naming the first weight (of `weights`, default every eligible one) that is not 2:4."""
    names = None if weights is None else set(weights)
    for entry in verify(model):
        if names is not None and entry["weight"] not in names:
            continue
        if names is not None and entry["status"] == "ineligible":
            raise ValueError(f"weight {entry['weight']} of {entry['node']} cannot be 2:4: {entry['reason']}")
        if entry["status"] == "dense":
            raise ValueError(
                f"weight {entry['weight']} of {entry['op']} {entry['node']} (shape {entry['shape']}) is not 2:4 "
                f"along axis {entry['axis']}: {entry['bad_groups']} groups of 4 hold more than 2 nonzeros"
            )


# -- pruning ----------------------------------------------------------------------------------------------------
def foreign_users(model: "onnx.ModelProto", sites: Iterable[WeightSite]) -> dict[str, str]:
    """Initializer -> a node that reads it (or a tensor on its way to a layer) without being one of `sites`' layers
    or the Transpose/DQ nodes between: pruning it would change that node's input too."""
    sites = [s for s in sites if s.weight is not None]
    ours: dict[str, set[str]] = {}  # initializer -> the tensors its sites' chains pass through
    for s in sites:
        ours.setdefault(s.weight, set()).update(s.chain)  # type: ignore[arg-type]
    owners = {s.node for s in sites}
    chain_nodes = {
        n.output[0]
        for n in model.graph.node
        if n.op_type in _PASS_THROUGH and n.output and any(n.output[0] in c for c in ours.values())
    }
    found: dict[str, str] = {}
    for index, node in enumerate(model.graph.node):
        name = _name(node, index)
        if name in owners or (node.output and node.output[0] in chain_nodes):
            continue
        for weight, tensors in ours.items():
            if weight not in found and any(t in tensors for t in node.input):
                found[weight] = f"{node.op_type} {name}"
        for inner in _subgraph_reads(node):  # an If/Loop/Scan body reading the weight from the outer scope
            for weight, tensors in ours.items():
                if weight not in found and inner in tensors:
                    found[weight] = f"the subgraph of {node.op_type} {name}"
    outputs = {o.name for o in model.graph.output}
    for weight, tensors in ours.items():
        if weight not in found and tensors & outputs:
            found[weight] = "a graph output"
    return found


def _subgraph_reads(node: "onnx.NodeProto") -> set[str]:
    """Every tensor name the node's subgraphs (If branches, Loop and Scan bodies, nested) read."""
    reads: set[str] = set()
    for attr in node.attribute:
        for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for inner in graph.node:
                reads.update(inner.input)
                reads |= _subgraph_reads(inner)
    return reads


def prune_sites(model: "onnx.ModelProto", sites: Iterable[WeightSite]) -> dict[str, float]:
    """Magnitude 2:4 pruning of the sites' initializers, in place; returns initializer -> fraction of zeros after.

    A float weight keeps its 2 largest |w| per group; a Q/DQ weight keeps its 2 largest |(q - zero) * scale| and
    the others are set to the zero point. Sites sharing an initializer must agree on its input axis."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    axes: dict[str, WeightSite] = {}
    for s in sites:
        if s.weight is None or s.reason is not None:
            raise ValueError(f"node {s.node}: cannot prune: {s.reason or 'no constant weight'}")
        first = axes.setdefault(s.weight, s)
        if first.axis != s.axis:
            raise ValueError(
                f"initializer {s.weight} is the weight of {first.node} (input axis {first.axis}) and of {s.node} "
                f"(input axis {s.axis}): one 2:4 pattern cannot serve both"
            )
    zeros = {}
    for weight, site in axes.items():
        values = numpy_helper.to_array(inits[weight])
        if site.dequantize is None:
            if values.dtype.kind != "f":
                raise ValueError(f"initializer {weight} of {site.node} holds {values.dtype}, not floats")
            pruned = prune_2_4(values, site.axis)
        else:
            zero = _zero_point(model, site, values)
            keep = keep_mask((values.astype(np.int64) - zero) * _scale(model, site, values), site.axis)
            pruned = np.where(keep, values, zero.astype(values.dtype))
        inits[weight].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(pruned, dtype=values.dtype), weight))
        zeros[weight] = round(float((effective_values(model, site) == 0).mean()), 6)
    return zeros
