"""The segmentation recipe's own code: canvases of several sizes built from real digits, a small FCN, its training kind.

Why this data: a dense-prediction model needs per-pixel targets, and none ship
in a package here; scikit-learn's bundled 8x8 digits do. Each canvas (16x16,
24x24 or 32x32) holds one or two digits upsampled 1-2x and placed at seeded
positions, plus Gaussian noise; the target is the clean ink mask (ink > 0.5).
So the model must denoise with context, not threshold one pixel, and batches
come at several sizes, which is what validating a model with dynamic height
and width in one stage needs.

Same split as `digits_int8.yaml` (digits_plugin._split): canvases for training
and calibration use the 1,200 training digits, validation canvases only the
597 held-out ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from digits_plugin import _split
from pydantic import Field

from pipeline.stage import OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    import numpy as np

SIZES = (16, 24, 32)  # canvas side of each batch, cycled batch by batch: all within the recipe's dims
NOISE = 0.2  # std of the Gaussian noise on the input canvas (the target is the clean mask)
INK = 0.5  # a pixel is foreground where the clean canvas exceeds this


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of one square image to size x size (pixel centres aligned)."""
    import numpy as np

    side = image.shape[0]
    where = np.clip((np.arange(size) + 0.5) * side / size - 0.5, 0, side - 1)
    lo = np.floor(where).astype(int)
    hi = np.minimum(lo + 1, side - 1)
    frac = where - lo
    rows = image[lo] * (1 - frac)[:, None] + image[hi] * frac[:, None]
    return (rows[:, lo] * (1 - frac)[None, :] + rows[:, hi] * frac[None, :]).astype(np.float32)


def canvas_batch(digits: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 8, 8) digits in [0, 1] -> noisy canvases (n, 1, size, size) and their masks (n, 1, size, size).

    Canvases of 24 and more hold a second digit (the next one, wrapping round), so masks have several blobs.
    """
    import numpy as np

    n = len(digits)
    clean = np.zeros((n, size, size), np.float32)
    for i in range(n):
        for j in range(1 if size < 24 else 2):
            side = int(rng.integers(8, min(16, size) + 1))
            glyph = resize(digits[(i + j) % n], side)
            top, left = rng.integers(0, size - side + 1, size=2)
            window = clean[i, top : top + side, left : left + side]
            np.maximum(window, glyph, out=window)
    noisy = clean + rng.normal(0.0, NOISE, clean.shape).astype(np.float32)
    return noisy[:, None], (clean > INK).astype(np.float32)[:, None]


def _canvases(digits: np.ndarray, batch: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    for k, start in enumerate(range(0, len(digits), batch)):
        yield canvas_batch(digits[start : start + batch], SIZES[k % len(SIZES)], rng)


def held_out(count: int = 240, batch: int = 40) -> Iterator[tuple[dict[str, Any], None]]:
    """`count` canvases from the held-out digits, the size changing batch by batch (no labels: FP32 is the
    reference)."""
    _, _, x, _ = _split()
    for image, _mask in _canvases(x[:count, 0], batch, seed=2):
        yield {"image": image}, None


def calibration(count: int = 300, batch: int = 50) -> Iterator[tuple[dict[str, Any], None]]:
    """Calibration canvases from the first `count` training digits (never the held-out ones), mixed sizes."""
    x, _, _, _ = _split()
    for image, _mask in _canvases(x[:count, 0], batch, seed=1):
        yield {"image": image}, None


def constant(count: int = 1, size: int = 24) -> Iterator[tuple[dict[str, Any], None]]:
    """A deliberately broken calibration set: `count` blank canvases (for the gate tests)."""
    import numpy as np

    yield {"image": np.zeros((count, 1, size, size), np.float32)}, None


def held_out_iou(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean IoU of (probabilities > 0.5) against the target masks, one figure per canvas (both empty = 1)."""
    import numpy as np

    p = predicted.reshape(len(predicted), -1) > 0.5
    t = target.reshape(len(target), -1) > 0.5
    inter, union = (p & t).sum(1), (p | t).sum(1)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def digits_fcn(width: int = 16) -> Any:
    """The model factory: two convs at full size, two at half size, upsample to the input's size, fuse, sigmoid."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class DigitsFCN(nn.Module):
        """Fully convolutional: any height and width; the upsample takes the input's own size, so odd sizes work."""

        def __init__(self) -> None:
            super().__init__()
            self.full = nn.Sequential(
                nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()
            )
            self.coarse = nn.Sequential(
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(2 * width, 2 * width, 3, padding=1),
                nn.ReLU(),
            )
            self.head = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 1))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            full = self.full(image)
            coarse = F.interpolate(self.coarse(full), size=full.shape[-2:], mode="bilinear", align_corners=False)
            return torch.sigmoid(self.head(torch.cat([full, coarse], 1)))

    return DigitsFCN()


class TrainParams(Params):
    epochs: int = Field(12, ge=1, description="passes over the 1,200 training digits (fresh canvases each pass)")
    lr: float = Field(3e-3, gt=0, description="Adam learning rate")
    batch_size: int = Field(32, ge=1, description="training batch size (canvases)")
    seed: int = Field(0, description="torch and data seed (init, shuffling, placement, noise)")
    width: int = Field(
        16,
        ge=1,
        description="channels of the first conv; set model.kwargs.width to the same "
        "value so export builds the same net",
    )


class TrainDigitsSegment(Stage[TrainParams]):
    """Train digits_fcn to segment ink on noisy canvases of mixed sizes; writes a state_dict checkpoint."""

    kind = "digits.train_segment"
    outputs = {"checkpoint": OutputSpec("model.pt", description="state_dict, loadable with weights_only=True")}
    packages = ("torch", "scikit-learn")
    extra = "torch"

    def run(self, ctx: StageContext[TrainParams]) -> dict:
        import numpy as np
        import torch

        p = ctx.params
        torch.manual_seed(p.seed)
        torch.use_deterministic_algorithms(True)
        x, _, xt, _ = _split()
        net = digits_fcn(p.width)
        opt = torch.optim.Adam(net.parameters(), lr=p.lr)
        rng = np.random.default_rng(p.seed)
        for epoch in range(p.epochs):
            net.train()
            for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // p.batch_size)):
                image, mask = canvas_batch(x[idx, 0], int(rng.choice(SIZES)), rng)
                opt.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy(net(torch.from_numpy(image)), torch.from_numpy(mask))
                loss.backward()
                opt.step()
            ctx.progress(epoch + 1, p.epochs, "training")
        net.eval()
        ious = []
        with torch.no_grad():
            for image, mask in _canvases(xt[:, 0], 40, seed=2):
                ious.append((held_out_iou(net(torch.from_numpy(image)).numpy(), mask), len(image)))
        torch.save(net.state_dict(), ctx.outdir / "model.pt")
        iou = sum(v * n for v, n in ious) / sum(n for _, n in ious)
        return {"held_out_iou": round(iou, 4), "train_digits": len(x)}
