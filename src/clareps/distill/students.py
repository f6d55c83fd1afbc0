"""Student classifiers: inputs in [0, 1], normalisation inside, a named feature layer."""

from __future__ import annotations

import torch
from torch import nn

from clareps.errors import ClarepsError


class Normalize(nn.Module):
    def __init__(self, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SmallCNN(nn.Module):
    """A fast CNN for 32x32 inputs; ``features`` (pooled, width ``4*width``) feeds the head."""

    feature_path = "features"

    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 3):
        super().__init__()
        self.normalize = Normalize(*(((0.5,) * in_channels, (0.25,) * in_channels)))
        self.features = nn.Sequential(
            _conv_bn(in_channels, width), _conv_bn(width, width), nn.MaxPool2d(2),
            _conv_bn(width, 2 * width), _conv_bn(2 * width, 2 * width), nn.MaxPool2d(2),
            _conv_bn(2 * width, 4 * width), _conv_bn(4 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * width, num_classes)
        self.feature_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(x)))


STUDENTS = {"small-cnn": SmallCNN}


def make_student(name: str, num_classes: int, **kwargs) -> nn.Module:
    if name not in STUDENTS:
        raise ClarepsError(f"unknown student '{name}' (known: {', '.join(sorted(STUDENTS))})")
    return STUDENTS[name](num_classes=num_classes, **kwargs)
