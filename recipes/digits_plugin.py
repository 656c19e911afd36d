"""The digits recipe's own code: a small CNN, its training stage kind, and its datasets.

Loaded through the recipe's `plugins: [digits_plugin]`, which proves a
third-party stage kind works without editing `stages/`. The data is
scikit-learn's bundled 8x8 digits (1,797 real images, no download), split
once with a fixed seed: 1,200 for training (and calibration), 597 held out.
"""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import Field

from pipeline.stage import OutputSpec, Params, Stage, StageContext

TRAIN_COUNT = 1200


def _split() -> tuple[Any, Any, Any, Any]:
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]  # N x 1 x 8 x 8, in [0, 1]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:TRAIN_COUNT], y[:TRAIN_COUNT], x[TRAIN_COUNT:], y[TRAIN_COUNT:]


def digits_net(width: int = 16) -> Any:
    """The model factory: conv-conv-pool-fc, ~30k parameters."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 16, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def calibration(count: int = 300, batch: int = 50) -> Iterator[tuple[dict[str, Any], Any]]:
    """Calibration batches: the first `count` training images (never the held-out ones)."""
    x, y, _, _ = _split()
    for i in range(0, min(count, len(x)), batch):
        yield {"input": x[i : i + batch]}, y[i : i + batch]


def held_out(batch: int = 100) -> Iterator[tuple[dict[str, Any], Any]]:
    """The 597 held-out images with their labels: validation only."""
    _, _, x, y = _split()
    for i in range(0, len(x), batch):
        yield {"input": x[i : i + batch]}, y[i : i + batch]


def zeros(count: int = 1) -> Iterator[tuple[dict[str, Any], Any]]:
    """A deliberately broken calibration set: all-zero images (for the gate test)."""
    import numpy as np

    yield {"input": np.zeros((count, 1, 8, 8), np.float32)}, None


class TrainParams(Params):
    epochs: int = Field(20, ge=1, description="passes over the 1,200 training images")
    lr: float = Field(3e-3, gt=0, description="Adam learning rate")
    batch_size: int = Field(64, ge=1, description="training batch size")
    seed: int = Field(0, description="torch seed (init and shuffling)")
    width: int = Field(16, ge=1, description="channels of the first conv (passed to digits_net)")


class TrainDigits(Stage[TrainParams]):
    """Train digits_net on scikit-learn's digits; writes a state_dict checkpoint."""

    kind = "digits.train"
    outputs = {"checkpoint": OutputSpec("model.pt", description="state_dict, loadable with weights_only=True")}
    packages = ("torch", "scikit-learn")
    extra = "torch"

    def run(self, ctx: StageContext[TrainParams]) -> dict:
        import torch

        p = ctx.params
        torch.manual_seed(p.seed)
        torch.use_deterministic_algorithms(True)
        x, y, xt, yt = (torch.from_numpy(a) for a in _split())
        net = digits_net(p.width)
        opt = torch.optim.Adam(net.parameters(), lr=p.lr)
        gen = torch.Generator().manual_seed(p.seed)
        for epoch in range(p.epochs):
            net.train()
            for idx in torch.randperm(len(x), generator=gen).split(p.batch_size):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
            ctx.progress(epoch + 1, p.epochs, "training")
        net.eval()
        with torch.no_grad():
            accuracy = float((net(xt).argmax(1) == yt).float().mean())
        torch.save(net.state_dict(), ctx.outdir / "model.pt")
        return {"held_out_accuracy": round(accuracy, 4), "train_images": len(x)}
