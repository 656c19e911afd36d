"""Build the recipe's torch model from its `model:` section, reproducibly.

Weights are never downloaded: a model is its factory's code, called after
`torch.manual_seed(seed)`, plus an optional local checkpoint. Every stage that
needs the torch model (export, a torch reference for validation) builds it here
so they all see the same network. torch is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stages.common.refs import callable_from_ref

if TYPE_CHECKING:
    import torch

    from pipeline.schema import ModelSpec


def module_from_spec(model: "ModelSpec", recipe_dir: Path, checkpoint: Path | None = None) -> "torch.nn.Module":
    """Call the factory under the recipe's seed, load the checkpoint if any, switch to eval.

    `checkpoint` (another stage's output, e.g. a training stage) wins over `model.checkpoint`.
    """
    import torch

    if model.factory is None:
        raise ValueError("model.factory is not set; the torch model cannot be built")
    factory = callable_from_ref(model.factory, recipe_dir)
    torch.manual_seed(model.seed)
    module = factory(**model.kwargs)
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"factory {model.factory} returned {type(module).__name__}, not a torch.nn.Module")
    if checkpoint is not None or model.checkpoint:
        if checkpoint is not None:
            path, label = Path(checkpoint), Path(checkpoint).name
        else:
            assert model.checkpoint is not None  # no stage checkpoint: the recipe's, per the test above
            path, label = Path(recipe_dir) / model.checkpoint, model.checkpoint
        if not path.is_file():
            raise ValueError(f"checkpoint {label!r} not found (looked for {path.resolve()})")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"checkpoint {label!r} holds a {type(state).__name__}, not a state_dict")
        module.load_state_dict(state)
    return module.eval()


def torch_dtype(name: str) -> "torch.dtype":
    """The torch dtype for a recipe dtype name (`float32`, `int64`, ...)."""
    import torch

    return getattr(torch, name)  # the recipe's DTYPES are all torch attribute names


def numpy_inputs(model: "ModelSpec", shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs in the recipe's dtypes (bfloat16 travels as float32)."""
    from stages.runtimes.dtypes import random_array

    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in model.tensors.items():
        dtype = "float32" if spec.dtype == "bfloat16" else spec.dtype
        out[name] = random_array(rng, shapes[name], np.dtype(dtype))
    return out


def run_torch(module: "torch.nn.Module", model: "ModelSpec", feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the module on numpy feeds (positional, in `tensors` order); outputs flattened to a list."""
    import torch

    args = [
        torch.from_numpy(np.ascontiguousarray(feeds[n])).to(torch_dtype(model.tensors[n].dtype)) for n in model.tensors
    ]
    with torch.no_grad():
        result = module(*args)
    return [t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy() for t in _flatten(result)]


def _flatten(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flatten(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flatten(v)]
    return []
