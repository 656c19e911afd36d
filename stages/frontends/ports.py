"""A converted model's inputs and outputs against the recipe's `model:` section: names, shapes, dtypes.

Other frameworks name their inputs their own way (a SavedModel by its signature's keys, `input`; a TFLite file
by tensor names, `serving_default_input:0`; Paddle by its feed names) and often leave dims unknown (a batch of
`None`). `bind_inputs` pairs each input with a `model.tensors` entry, by name (the name itself, without a
`:0` suffix or a `serving_default_` prefix), or by position when both hold one; the converted model then takes
the recipe's names, and its unknown dims take the recipe's `dims`. A dim the model fixes must agree with the
recipe: a mismatch is one line, not a model that fails at its first odd batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:
    from pipeline.schema import ModelSpec

Dim = int | tuple[str, int, int]  # fixed, or a recipe dim: (name, min, max)


@dataclass(frozen=True)
class Port:
    """One model input as the framework declares it: a dim of None is unknown; a shape of None, its rank."""

    name: str
    dtype: str  # numpy's name
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True)
class Bound:
    """A model input bound to the recipe: the name it takes, each dim fixed or a recipe range, the opt shape."""

    port: Port
    name: str
    dims: tuple[Dim, ...]
    opt: tuple[int, ...]

    def shape_or_none(self) -> tuple[int | None, ...]:
        """Fixed dims as ints, ranges as None (what tf.TensorSpec and tf2onnx's shape override take)."""
        return tuple(d if isinstance(d, int) else (d[1] if d[1] == d[2] else None) for d in self.dims)

    def dim_names(self) -> dict[int, str]:
        """Axis -> the recipe's dim name, for the dims left dynamic."""
        return {i: d[0] for i, d in enumerate(self.dims) if not isinstance(d, int) and d[1] != d[2]}


def aliases(name: str) -> set[str]:
    """The names an input may be called by in a recipe: `serving_default_input:0` is also `input`."""
    base = name.split(":")[0]
    found = {name, base}
    for prefix in ("serving_default_",):
        if base.startswith(prefix):
            found.add(base[len(prefix) :])
    return found


def bind_inputs(ports: list[Port], spec: "ModelSpec | None") -> list[Bound]:
    """Each model input bound to its `model.tensors` entry (in the recipe's order); ValueError, one line, when
    names, ranks, fixed dims or dtypes disagree. Without `model.tensors`, every input must be fully static."""
    if spec is None or not spec.tensors:
        return [_unbound(port) for port in ports]
    names = list(spec.tensors)
    pairs: dict[str, Port] = {}
    for name in names:
        matches = [p for p in ports if name in aliases(p.name)]
        if len(matches) == 1:
            pairs[name] = matches[0]
    if len(pairs) != len(names) or len({p.name for p in pairs.values()}) != len(ports):
        if len(ports) == 1 and len(names) == 1:
            pairs = {names[0]: ports[0]}  # one input: its name does not matter
        else:
            raise ValueError(
                f"the model's inputs {[p.name for p in ports]} do not match model.tensors {names} "
                "(by name, or by position when both have one)"
            )
    return [_bind(pairs[name], name, spec) for name in names]


def _unbound(port: Port) -> Bound:
    if port.shape is None or any(d is None for d in port.shape):
        shape = "?" if port.shape is None else [("?" if d is None else d) for d in port.shape]
        raise ValueError(
            f"input {port.name} has unknown dims {shape}; declare the model's inputs in model.tensors and dims"
        )
    dims = tuple(int(d) for d in port.shape if d is not None)
    return Bound(port, port.name, dims, dims)


def _bind(port: Port, name: str, spec: "ModelSpec") -> Bound:
    tensor = spec.tensors[name]
    label = name if name == port.name else f"{name} (the model's {port.name})"
    if tensor.dtype != port.dtype:
        raise ValueError(f"input {label} is {port.dtype} in the model, {tensor.dtype} in model.tensors")
    if port.shape is not None and len(port.shape) != len(tensor.shape):
        raise ValueError(
            f"input {label} has rank {len(port.shape)} in the model {_show(port.shape)}, "
            f"{len(tensor.shape)} in model.tensors {tensor.shape}"
        )
    own = port.shape if port.shape is not None else (None,) * len(tensor.shape)
    dims: list[Dim] = []
    for axis, (theirs, ours) in enumerate(zip(own, tensor.shape)):
        if isinstance(ours, int):
            wanted, low, high = str(ours), ours, ours
            dims.append(ours)
        else:
            r = spec.dims[ours]
            wanted, low, high = f"{ours} ({r.min}..{r.max})", r.min, r.max
            dims.append((ours, r.min, r.max))
        if theirs is not None and not low == high == theirs:
            raise ValueError(
                f"input {label}: dim {axis} is fixed at {theirs} in the model {_show(own)}, the recipe asks {wanted}"
            )
    return Bound(port, name, tuple(dims), spec.shape(name, "opt"))


def _show(shape: tuple[int | None, ...]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def output_names(own: list[str], spec: "ModelSpec | None") -> list[str]:
    """The names the converted model's outputs take: `model.outputs` by position when the recipe gives them
    (ValueError when the counts differ), else the framework's own."""
    if spec is None or spec.outputs is None:
        return list(own)
    if len(spec.outputs) != len(own):
        raise ValueError(f"the model has {len(own)} outputs {own}, model.outputs names {len(spec.outputs)}")
    return list(spec.outputs)


def feeds_at(bound: list[Bound], seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs at the opt shape, by the recipe's names, in each input's dtype."""
    from stages.runtimes.dtypes import random_array

    rng = np.random.default_rng(seed)
    return {b.name: random_array(rng, b.opt, b.port.dtype) for b in bound}


def align(reference: Mapping[str, np.ndarray], outputs: list[set[str]], final: list[str]) -> dict[str, np.ndarray]:
    """The framework's outputs (by its own names) under the converted model's final names: output i is the
    reference output one of whose names it still carries (`outputs[i]`, read before renaming), else, when
    the counts agree, the reference's i-th."""
    own = list(reference)
    found: dict[str, np.ndarray] = {}
    for i, (names, name) in enumerate(zip(outputs, final)):
        same = [k for k in own if k in names]
        if same:
            found[name] = reference[same[0]]
        elif len(own) == len(outputs):
            found[name] = reference[own[i]]
        else:
            raise ValueError(f"cannot tell which of the framework's outputs {own} is the converted output {name}")
    return found
