"""The transformer recipe's own code: digits read as sequences of row tokens, a small encoder, its training kind.

Why rows as tokens: no text corpus ships inside a package here (scikit-learn's
text loaders download), but the bundled 8x8 digits do. Each image is resampled
vertically to a height of 6..32 rows and read top to bottom, one 8-pixel row
per token, so sequences of many lengths come from real data. A batch holds
samples of several heights padded to its longest, with an `attention_mask`
(1 = real row, 0 = padding); consecutive batches have different lengths, which
is what validating "text" with per-batch sequence lengths needs.

Same split as `digits_int8.yaml` (digits_plugin._split): 1,200 images for
training and calibration, 597 held out for validation only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator

from digits_plugin import _split
from pydantic import Field

from pipeline.stage import OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    import numpy as np

# Longest sequence of each batch, cycled batch by batch; every length lies in the recipe's dims.seq range.
LENGTHS = (8, 12, 16, 24, 32, 6)
MIN_ROWS = 6  # fewer rows than this and a resampled digit loses the strokes that tell 3 from 8
FREQS = 6  # sin/cos pairs of the relative-position encoding


def resample_rows(images: np.ndarray, height: int) -> np.ndarray:
    """(n, 8, 8) images -> (n, height, 8): linear interpolation along the rows (pixel centres aligned)."""
    import numpy as np

    rows = images.shape[1]
    where = np.clip((np.arange(height) + 0.5) * rows / height - 0.5, 0, rows - 1)
    lo = np.floor(where).astype(int)
    hi = np.minimum(lo + 1, rows - 1)
    frac = (where - lo)[None, :, None]
    return (images[:, lo] * (1 - frac) + images[:, hi] * frac).astype(np.float32)


def sequence_batch(images: np.ndarray, longest: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One padded batch: each image at a height drawn in [max(6, 2/3 longest), longest], the first at `longest`."""
    import numpy as np

    n = len(images)
    heights = rng.integers(max(MIN_ROWS, (2 * longest) // 3), longest + 1, size=n)
    heights[0] = longest
    tokens = np.zeros((n, longest, images.shape[2]), np.float32)
    mask = np.zeros((n, longest), np.int64)
    for height in np.unique(heights):
        rows = heights == height
        tokens[rows, :height] = resample_rows(images[rows], int(height))
        mask[rows, :height] = 1
    return {"tokens": tokens, "attention_mask": mask}


def _sequences(images: np.ndarray, labels: np.ndarray | None, batch: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    for k, start in enumerate(range(0, len(images), batch)):
        item = sequence_batch(images[start : start + batch], LENGTHS[k % len(LENGTHS)], rng)
        if labels is not None:
            item["label"] = labels[start : start + batch]
        yield item


def held_out(batch: int = 50) -> Iterator[dict[str, np.ndarray]]:
    """The 597 held-out digits as padded row sequences, a different longest length per batch, labels under `label`."""
    _, _, x, y = _split()
    yield from _sequences(x[:, 0], y, batch, seed=2)


def calibration(count: int = 300, batch: int = 50) -> Iterator[dict[str, np.ndarray]]:
    """Calibration sequences from the first `count` training images (never the held-out ones), mixed lengths."""
    x, _, _, _ = _split()
    yield from _sequences(x[:count, 0], None, batch, seed=1)


def constant(count: int = 1, length: int = 16) -> Iterator[dict[str, np.ndarray]]:
    """A deliberately broken calibration set: `count` blank sequences (for the gate tests)."""
    import numpy as np

    yield {"tokens": np.zeros((count, length, 8), np.float32), "attention_mask": np.ones((count, length), np.int64)}


def digits_encoder(d_model: int = 32, heads: int = 2, layers: int = 2, ff: int = 64) -> Any:
    """The model factory: row tokens -> `layers` pre-norm encoder layers -> (logits, pooled embedding)."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        """Multi-head self-attention written out: MatMul -> Add(mask) -> Softmax -> MatMul, as exporters see BERT."""

        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.out = nn.Linear(d_model, d_model)
            self.scale = (d_model // heads) ** -0.5

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            b, s, _ = x.shape
            q, k, v = self.qkv(x).reshape(b, s, 3, heads, d_model // heads).permute(2, 0, 3, 1, 4)
            weights = torch.softmax(torch.matmul(q * self.scale, k.transpose(-1, -2)) + bias, dim=-1)
            return self.out(torch.matmul(weights, v).transpose(1, 2).reshape(b, s, d_model))

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
            self.attention = Attention()
            self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model))

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            x = x + self.attention(self.norm1(x), bias)
            return x + self.ff(self.norm2(x))

    class DigitsEncoder(nn.Module):
        """Position = a row's place in its own sequence (0 top, 1 bottom), so every height reads alike."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(8, d_model)
            self.position = nn.Linear(2 * FREQS, d_model)
            self.register_buffer("freqs", torch.arange(1, FREQS + 1, dtype=torch.float32) * math.pi)
            self.layers = nn.ModuleList(Layer() for _ in range(layers))
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, 10)

        def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mask = attention_mask.clamp(0, 1).to(tokens.dtype)
            length = mask.sum(1, keepdim=True).clamp(min=1.0)
            where = (torch.cumsum(mask, 1) - 1).clamp(min=0) / (length - 1).clamp(min=1.0)
            angles = where.unsqueeze(-1) * self.freqs
            x = self.embed(tokens) + self.position(torch.cat([torch.sin(angles), torch.cos(angles)], -1))
            bias = ((1.0 - mask) * -1e4)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, bias)
            x = self.norm(x)
            embedding = (x * mask.unsqueeze(-1)).sum(1) / length  # masked mean: padding never counts
            return self.head(embedding), embedding

    return DigitsEncoder()


class TrainParams(Params):
    epochs: int = Field(40, ge=1, description="passes over the 1,200 training images (fresh heights each pass)")
    lr: float = Field(3e-3, gt=0, description="AdamW peak learning rate (one cycle: 10% warm-up, then cosine decay)")
    batch_size: int = Field(64, ge=1, description="training batch size")
    seed: int = Field(0, description="torch and data seed (init, shuffling, heights)")
    d_model: int = Field(
        32,
        ge=8,
        description="width of the encoder; set model.kwargs.d_model to the same value so export builds the same net",
    )


class TrainDigitsTransformer(Stage[TrainParams]):
    """Train digits_encoder on digits read as row sequences of mixed lengths; writes a state_dict checkpoint."""

    kind = "digits.train_transformer"
    outputs = {"checkpoint": OutputSpec("model.pt", description="state_dict, loadable with weights_only=True")}
    packages = ("torch", "scikit-learn")
    extra = "torch"

    def run(self, ctx: StageContext[TrainParams]) -> dict:
        import numpy as np
        import torch

        p = ctx.params
        torch.manual_seed(p.seed)
        torch.use_deterministic_algorithms(True)
        x, y, xt, yt = _split()
        net = digits_encoder(p.d_model)
        opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=1e-2)
        steps = p.epochs * math.ceil(len(x) / p.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=steps, pct_start=0.1)
        rng = np.random.default_rng(p.seed)
        for epoch in range(p.epochs):
            net.train()
            for idx in np.array_split(rng.permutation(len(x)), steps // p.epochs):
                item = sequence_batch(x[idx, 0], int(rng.choice(LENGTHS)), rng)
                logits, _ = net(torch.from_numpy(item["tokens"]), torch.from_numpy(item["attention_mask"]))
                opt.zero_grad()
                torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[idx])).backward()
                opt.step()
                sched.step()
            ctx.progress(epoch + 1, p.epochs, "training")
        net.eval()
        right = 0
        with torch.no_grad():
            for item in held_out():
                logits, _ = net(torch.from_numpy(item["tokens"]), torch.from_numpy(item["attention_mask"]))
                right += int((logits.argmax(1).numpy() == item["label"]).sum())
        torch.save(net.state_dict(), ctx.outdir / "model.pt")
        return {"held_out_accuracy": round(right / len(xt), 4), "train_images": len(x)}
