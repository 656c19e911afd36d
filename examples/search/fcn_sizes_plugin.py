"""fcn_sizes.yaml's own code: a small text-detector-like fully convolutional network, the canvases of several
sizes it reads, and the kind that trains it.

Why: a text detector (DBNet and its kin) is fully convolutional, runs at whatever size the page comes in,
and outputs a per-pixel "text here" probability map that is thresholded into regions; a validate gate on
the worst sample's IoU must hold at every size. The smallest inputs are the hardest: a region there is a
handful of pixels, so each pixel INT8 flips costs more IoU (here 16x16 canvases fall furthest).

Why INT8 fails it: a few channels of the stem's output span a far wider range than the rest, a known
hazard for per-tensor INT8 activations (the quantizer's step is set by the wide channels and the others
round to a few levels). They come from the weights, as they do in trained CNNs, and leave the float
function exactly as trained: after training, `plant_wide_channels` multiplies `outliers` output channels
of the stem's last conv by `gain` and divides the matching input channels of both convs that read them by
`gain` (ReLU(g*x)/g = ReLU(x)). NNCF quantizes a CNN without SmoothQuant (NNCF applies it only in
transformer mode, and its convolution alpha is off by default), so the default INT8 keeps the wide range.

The data: noisy canvases of 16x16, 24x24 and 32x32 (one size per batch) holding "words", runs of one to
three of scikit-learn's bundled 8x8 digits side by side at a seeded height and place; the target is each
word's box (the tight box around its ink), filled, as a text detector's region map. The digits are split
once with a fixed seed: canvases for training, calibration and tuning use the 1,200 training digits,
validation canvases only the 597 held-out ones.

The network: a stem at full size, two stride-2 stages, a feature pyramid (1x1 laterals, each coarser map
upsampled to the next finer one's size and added), and a head (3x3 conv, 1x1 conv, sigmoid) at full size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from pydantic import Field

from pipeline.stage import OutputSpec, Params, Stage, StageContext

if TYPE_CHECKING:
    import numpy as np

TRAIN_COUNT = 1200
SIZES = (16, 24, 32)  # canvas side of each batch, cycled batch by batch: all within the recipe's dims
NOISE = 0.25  # std of the Gaussian noise on the canvas (the target is the clean boxes)
INK = 0.3  # a glyph pixel brighter than this counts for its word's box


def _split() -> tuple[Any, Any]:
    """The digits as (n, 8, 8) images in [0, 1]: 1,200 for training and calibration, 597 held out (seeded)."""
    import numpy as np
    from sklearn.datasets import load_digits

    x = load_digits().images.astype(np.float32) / 16.0
    x = x[np.random.default_rng(0).permutation(len(x))]
    return x[:TRAIN_COUNT], x[TRAIN_COUNT:]


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of one 2-D image (pixel centres aligned)."""
    import numpy as np

    def axis(n_in: int, n_out: int) -> tuple[Any, Any, Any]:
        where = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(where).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), where - lo

    r0, r1, fr = axis(image.shape[0], height)
    c0, c1, fc = axis(image.shape[1], width)
    rows = image[r0] * (1 - fr)[:, None] + image[r1] * fr[:, None]
    return (rows[:, c0] * (1 - fc)[None, :] + rows[:, c1] * fc[None, :]).astype(np.float32)


def canvas_batch(digits: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 8, 8) digits -> noisy canvases (n, 1, size, size) and their word-box maps (n, 1, size, size).

    Canvas i holds `size // 16` words (one on 16 and 24, two on 32), each of 1-3 digits taken from `digits`
    round-robin starting at i, 6-10 pixels tall, placed at a seeded spot that keeps the word inside."""
    import numpy as np

    n = len(digits)
    clean = np.zeros((n, size, size), np.float32)
    boxes = np.zeros((n, size, size), np.float32)
    for i in range(n):
        taken = i
        for _ in range(max(1, size // 16)):
            height = int(rng.integers(6, 11))
            count = int(rng.integers(1, 4 if size >= 24 else 3))
            width = min(size, count * (height - 1) + 1)
            glyphs = np.concatenate([resize(digits[(taken + j) % n], height, height - 1) for j in range(count)], 1)
            word = resize(glyphs, height, width) if glyphs.shape[1] != width else glyphs
            taken += count
            top, left = int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1))
            window = clean[i, top : top + height, left : left + width]
            np.maximum(window, word, out=window)
            ink_r, ink_c = np.nonzero(word > INK)
            if len(ink_r):
                boxes[i, top + ink_r.min() : top + ink_r.max() + 1, left + ink_c.min() : left + ink_c.max() + 1] = 1
    noisy = clean + rng.normal(0.0, NOISE, clean.shape).astype(np.float32)
    return noisy[:, None], boxes[:, None]


def _canvases(digits: np.ndarray, batch: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    for k, start in enumerate(range(0, len(digits), batch)):
        yield canvas_batch(digits[start : start + batch], SIZES[k % len(SIZES)], rng)


def held_out(count: int = 300, batch: int = 25) -> Iterator[tuple[dict[str, Any], None]]:
    """`count` canvases from the held-out digits, the size changing batch by batch (no labels: FP32 is the
    reference)."""
    _, x = _split()
    for image, _boxes in _canvases(x[:count], batch, seed=2):
        yield {"image": image}, None


def calibration(count: int = 300, batch: int = 25) -> Iterator[tuple[dict[str, Any], None]]:
    """Calibration canvases from the first `count` training digits (never the held-out ones), mixed sizes."""
    x, _ = _split()
    for image, _boxes in _canvases(x[:count], batch, seed=1):
        yield {"image": image}, None


def tuning(start: int = 300, count: int = 300, batch: int = 25) -> Iterator[tuple[dict[str, Any], None]]:
    """Canvases from training digits `start`.. (calibration reads the first 300), for a search to judge trials
    on apart from the held-out test canvases."""
    x, _ = _split()
    for image, _boxes in _canvases(x[start : start + count], batch, seed=3):
        yield {"image": image}, None


def text_fcn(width: int = 16) -> Any:
    """The model factory: stem, two stride-2 stages, a feature pyramid back to full size, a sigmoid head."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def block(cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()
        )

    class TextFCN(nn.Module):
        """Fully convolutional: any height and width; each upsample takes the finer map's own size."""

        def __init__(self) -> None:
            super().__init__()
            self.stages = nn.ModuleList(
                [block(1, width, 1), block(width, 2 * width, 2), block(2 * width, 4 * width, 2)]
            )
            self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in (width, 2 * width, 4 * width))
            self.head = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 1))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            features = []
            x = image
            for stage in self.stages:
                x = stage(x)
                features.append(x)
            top = self.laterals[2](features[2])
            for level in (1, 0):
                finer = self.laterals[level](features[level])
                top = finer + F.interpolate(top, size=finer.shape[-2:], mode="bilinear", align_corners=False)
            return torch.sigmoid(self.head(top))

    return TextFCN()


def plant_wide_channels(net: Any, channels: list[int], gain: float) -> None:
    """Multiply the stem's last conv output `channels` (weights and bias) by `gain` and divide the matching
    input channels of both convs that read it by `gain`: ReLU(g*x)/g = ReLU(x), so the float function is
    unchanged, but those channels of the stem's output now span `gain` times the range of the rest."""
    import torch

    with torch.no_grad():
        conv = net.stages[0][2]
        conv.weight[channels] *= gain
        conv.bias[channels] *= gain
        for reader in (net.stages[1][0], net.laterals[0]):
            reader.weight[:, channels] /= gain


def box_iou(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU of (probabilities > 0.5) against the target boxes, one figure per canvas (both empty = 1)."""
    import numpy as np

    p = predicted.reshape(len(predicted), -1) > 0.5
    t = target.reshape(len(target), -1) > 0.5
    inter, union = (p & t).sum(1), (p | t).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


class TrainParams(Params):
    epochs: int = Field(8, ge=1, description="passes over the 1,200 training digits (fresh canvases each pass)")
    lr: float = Field(3e-3, gt=0, description="Adam learning rate")
    batch_size: int = Field(32, ge=1, description="training batch size (canvases)")
    seed: int = Field(0, description="torch and data seed (init, shuffling, placement, noise, wide channels)")
    outliers: int = Field(2, ge=0, description="wide channels planted in the stem's output after training (0: none)")
    gain: float = Field(64.0, gt=0, description="how much wider those channels are than they trained to be")


class TrainTextFcn(Stage[TrainParams]):
    """Train text_fcn to find word boxes on noisy canvases of mixed sizes; writes a state_dict checkpoint."""

    kind = "search.train_fcn_sizes"
    outputs = {"checkpoint": OutputSpec("model.pt", description="state_dict, loadable with weights_only=True")}
    packages = ("torch", "scikit-learn")
    extra = "torch"
    model_fields = ("kwargs",)  # the net's width: model.kwargs, so training and export build the same net

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
        x, xt = _split()
        net = text_fcn(**(ctx.model.kwargs if ctx.model is not None else {}))
        opt = torch.optim.Adam(net.parameters(), lr=p.lr)
        rng = np.random.default_rng(p.seed)
        for epoch in range(p.epochs):
            net.train()
            for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // p.batch_size)):
                image, boxes = canvas_batch(x[idx], int(rng.choice(SIZES)), rng)
                opt.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy(net(torch.from_numpy(image)), torch.from_numpy(boxes))
                loss.backward()
                opt.step()
            ctx.progress(epoch + 1, p.epochs, "training")
        net.eval()
        channels = sorted(rng.choice(net.stages[0][2].out_channels, p.outliers, replace=False).tolist())
        plant_wide_channels(net, channels, p.gain)
        per_size: dict[int, list[float]] = {}
        with torch.no_grad():
            for k, (image, boxes) in enumerate(_canvases(xt, 25, seed=2)):
                iou = box_iou(net(torch.from_numpy(image)).numpy(), boxes)
                per_size.setdefault(SIZES[k % len(SIZES)], []).extend(iou.tolist())
        torch.save(net.state_dict(), ctx.outdir / "model.pt")
        figures = {f"held_out_iou_{s}": round(float(np.mean(v)), 4) for s, v in sorted(per_size.items())}
        return {**figures, "wide_channels": channels}
