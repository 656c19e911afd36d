"""Tiny torch models for the stage tests: built in code, seconds to export.

Their forward() lives here (not in torch.nn), so the exporter's stack traces
point into this file: that is what the determinism tests need.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Conv-BN-ReLU twice, pooled into a linear head: a classifier in a few hundred weights."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.head(x.mean(dim=(2, 3)))


def tiny_cnn(channels: int = 8, classes: int = 10) -> nn.Module:
    return TinyCNN(channels, classes)


class TwoInputs(nn.Module):
    """Two inputs sharing the batch dim, two outputs: exercises names and shared dims."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.a(x) + self.b(y)
        return torch.relu(s), s.sum(dim=1)


def two_inputs() -> nn.Module:
    return TwoInputs()
