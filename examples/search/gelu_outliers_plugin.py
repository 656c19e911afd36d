"""gelu_outliers.yaml's own code: a small sentence-encoder-like transformer whose MLPs carry a few huge
channels after GELU, the digits it reads, and the kind that trains it.

Why: trained sentence encoders carry a handful of channels in the MLP's GELU output that dwarf the rest,
feeding fc2. Per-tensor INT8 activations on fc2's input are then scaled for those few channels and round
the others to a few levels. SmoothQuant (NNCF's transformer mode: alpha 0.95 on MatMuls) divides each
input channel of a MatMul by a factor and multiplies the weights by it, but NNCF clips every factor at
100 (`SmoothQuant._calculate_scale_and_ratio`), so a channel that needs more keeps part of its range, and
no other alpha gets past the clip either.

The outliers come from the weights, as they do in trained encoders: in `outliers` of the `ff` channels
of every layer, fc1's row (weights and bias) is multiplied by `gain` and fc2's matching column divided
by it. The training kind trains with that factor in place (a torch parametrization) and folds it into
the saved weights, so the checkpoint is a plain encoder whose float function is what was trained
(GELU(g*u)/g on those channels), and nothing in the exported graph marks the outlier channels. The
training summary's `outlier_ratio` is how far they stand out on held-out digits (the smallest outlier
channel's largest |GELU output| over the median channel's).

The data: scikit-learn's bundled 8x8 digits, each read top to bottom as a sequence of row tokens
resampled to 8, 12 or 16 rows (one length per batch, so no padding and no mask), split once with a
fixed seed: 1,200 digits for training, calibration (the first 300) and tuning, 597 held out for
validation only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator

from pydantic import Field

from pipeline.stage import OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    import numpy as np

TRAIN_COUNT = 1200
LENGTHS = (8, 12, 16)  # rows per digit, cycled batch by batch: all within the recipe's dims.seq range


def _split() -> tuple[Any, Any, Any, Any]:
    """The digits as (n, 8, 8) images in [0, 1] and labels: 1,200 for training, 597 held out (seeded)."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float32) / 16.0
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    return x[order][:TRAIN_COUNT], y[order][:TRAIN_COUNT], x[order][TRAIN_COUNT:], y[order][TRAIN_COUNT:]


def rows(images: np.ndarray, length: int) -> np.ndarray:
    """(n, 8, 8) images -> (n, length, 8) row tokens: linear interpolation along the rows."""
    import numpy as np

    where = np.clip((np.arange(length) + 0.5) * images.shape[1] / length - 0.5, 0, images.shape[1] - 1)
    lo = np.floor(where).astype(int)
    hi = np.minimum(lo + 1, images.shape[1] - 1)
    frac = (where - lo)[None, :, None]
    return (images[:, lo] * (1 - frac) + images[:, hi] * frac).astype(np.float32)


def _sequences(images: np.ndarray, labels: np.ndarray | None, batch: int) -> Iterator[dict[str, np.ndarray]]:
    for k, start in enumerate(range(0, len(images), batch)):
        item = {"tokens": rows(images[start : start + batch], LENGTHS[k % len(LENGTHS)])}
        if labels is not None:
            item["label"] = labels[start : start + batch]
        yield item


def held_out(batch: int = 50) -> Iterator[dict[str, np.ndarray]]:
    """The 597 held-out digits as row sequences (the length changing batch by batch), labels under `label`."""
    _, _, x, y = _split()
    yield from _sequences(x, y, batch)


def calibration(count: int = 300, batch: int = 50) -> Iterator[dict[str, np.ndarray]]:
    """Calibration sequences from the first `count` training digits (never the held-out ones), mixed lengths."""
    x, _, _, _ = _split()
    yield from _sequences(x[:count], None, batch)


def tuning(start: int = 300, count: int = 600, batch: int = 50) -> Iterator[dict[str, np.ndarray]]:
    """Labelled training digits from `start` (calibration reads the first 300), for a search to judge trials on
    apart from the held-out test digits."""
    x, y, _, _ = _split()
    yield from _sequences(x[start : start + count], y[start : start + count], batch)


def outlier_encoder(d_model: int = 64, heads: int = 2, layers: int = 2, ff: int = 128) -> Any:
    """The model factory: row tokens -> `layers` pre-norm encoder layers -> (logits, mean-pooled embedding).

    A plain encoder: the outlier channels are in the weights the checkpoint holds, not in the code."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        """Self-attention written out (MatMul -> Softmax -> MatMul), as exporters see BERT."""

        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.out = nn.Linear(d_model, d_model)
            self.scale = (d_model // heads) ** -0.5

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, s, _ = x.shape
            q, k, v = self.qkv(x).reshape(b, s, 3, heads, d_model // heads).permute(2, 0, 3, 1, 4)
            weights = torch.softmax(torch.matmul(q * self.scale, k.transpose(-1, -2)), dim=-1)
            return self.out(torch.matmul(weights, v).transpose(1, 2).reshape(b, s, d_model))

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
            self.attention = Attention()
            self.fc1, self.act, self.fc2 = nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attention(self.norm1(x))
            return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    class OutlierEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(8, d_model)
            self.position = nn.Linear(2, d_model)
            self.layers = nn.ModuleList(Layer() for _ in range(layers))
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, 10)

        def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # position: a row's place in its own sequence (0 top, 1 bottom), so every length reads alike
            where = torch.cumsum(torch.ones_like(tokens[..., :1]), 1) / tokens.shape[1]
            x = self.embed(tokens) + self.position(torch.cat([torch.sin(math.pi * where), where], -1))
            for layer in self.layers:
                x = layer(x)
            embedding = self.norm(x).mean(1)
            return self.head(embedding), embedding

    return OutlierEncoder()


def plant_outliers(net: Any, channels: list[int], gain: float) -> None:
    """Multiply fc1's rows `channels` (weights and bias) by `gain` and divide fc2's matching columns by it, in
    every layer, as torch parametrizations: training sees the scaled weights, `fold` makes them plain."""
    import torch
    from torch.nn.utils import parametrize

    class Scale(torch.nn.Module):
        factor: torch.Tensor

        def __init__(self, factor: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("factor", factor)

        def forward(self, value: torch.Tensor) -> torch.Tensor:
            return value * self.factor

    for layer in net.layers:
        g = torch.ones(layer.fc1.out_features)
        g[channels] = gain
        parametrize.register_parametrization(layer.fc1, "weight", Scale(g[:, None]))
        parametrize.register_parametrization(layer.fc1, "bias", Scale(g))
        parametrize.register_parametrization(layer.fc2, "weight", Scale(1.0 / g[None, :]))


def fold(net: Any) -> None:
    """Bake every parametrization into its plain parameter (the state_dict then loads into the factory's net)."""
    from torch.nn.utils import parametrize

    for module in list(net.modules()):
        for name in list(getattr(module, "parametrizations", {})):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)


class TrainParams(Params):
    epochs: int = Field(20, ge=1, description="passes over the 1,200 training digits")
    lr: float = Field(3e-3, gt=0, description="AdamW peak learning rate (one cycle: 10% warm-up, then cosine)")
    batch_size: int = Field(64, ge=1, description="training batch size")
    seed: int = Field(0, description="torch and data seed (init, shuffling, lengths, outlier channels)")
    outliers: int = Field(2, ge=0, description="outlier channels per layer in the GELU output (0: a plain encoder)")
    gain: float = Field(
        1000.0, gt=0, description="how much larger those channels are: fc1's row times gain, fc2's column over it"
    )


class TrainOutlierEncoder(Stage[TrainParams]):
    """Train outlier_encoder on digit row sequences with `outliers` GELU channels scaled by `gain` (folded in)."""

    kind = "search.train_gelu_outliers"
    outputs = {"checkpoint": OutputSpec("model.pt", description="state_dict, loadable with weights_only=True")}
    packages = ("torch", "scikit-learn")
    extra = "torch"
    model_fields = ("kwargs",)  # the net's sizes: model.kwargs, so training and export build the same net

    def run(self, ctx: StageContext[TrainParams]) -> dict:
        import torch

        p = ctx.params
        torch.manual_seed(p.seed)
        torch.use_deterministic_algorithms(True)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the same weights on any machine, and no thread contention on a busy one
        try:
            return self._train(ctx)
        finally:
            torch.set_num_threads(threads)

    def _train(self, ctx: StageContext[TrainParams]) -> dict:
        import numpy as np
        import torch

        p = ctx.params
        x, y, _, _ = _split()
        net = outlier_encoder(**(ctx.model.kwargs if ctx.model is not None else {}))
        rng = np.random.default_rng(p.seed)
        channels = sorted(rng.choice(net.layers[0].fc1.out_features, p.outliers, replace=False).tolist())
        plant_outliers(net, channels, p.gain)
        opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=1e-2)
        steps = p.epochs * math.ceil(len(x) / p.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=steps, pct_start=0.1)
        for epoch in range(p.epochs):
            net.train()
            for idx in np.array_split(rng.permutation(len(x)), steps // p.epochs):
                logits, _ = net(torch.from_numpy(rows(x[idx], int(rng.choice(LENGTHS)))))
                opt.zero_grad()
                torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[idx])).backward()
                opt.step()
                sched.step()
            ctx.progress(epoch + 1, p.epochs, "training")
        fold(net)
        net.eval()
        torch.save(net.state_dict(), ctx.outdir / "model.pt")
        return {**_held_out_figures(net, channels), "outlier_channels": channels}


def _held_out_figures(net: Any, channels: list[int]) -> dict[str, Any]:
    """Held-out accuracy, and how far the outlier channels of the GELU output stand above the rest."""
    import torch

    peaks: list[Any] = []  # per batch and layer: each channel's largest |GELU output|

    def record(_module: Any, _inputs: Any, out: Any) -> None:
        peaks.append(out.abs().amax((0, 1)))

    hooks = [layer.act.register_forward_hook(record) for layer in net.layers]
    right = total = 0
    with torch.no_grad():
        for item in held_out():
            logits, _ = net(torch.from_numpy(item["tokens"]))
            right += int((logits.argmax(1).numpy() == item["label"]).sum())
            total += len(item["label"])
    for hook in hooks:
        hook.remove()
    peak = torch.stack(peaks).amax(0)  # per channel, over layers and batches
    rest = [c for c in range(len(peak)) if c not in channels]
    ratio = float(peak[channels].min() / peak[rest].median()) if channels else 1.0
    return {"held_out_accuracy": round(right / total, 4), "outlier_ratio": round(ratio, 1)}
