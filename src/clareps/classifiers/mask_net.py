"""A small U-Net that predicts an image's foreground mask: the mask judge's architecture.

Inputs in [0, 1] (normalised inside, like the students), output one logit per pixel; two
poolings, so the image side must be a multiple of 4.
"""

from __future__ import annotations

import torch
from torch import nn

from clareps.classifiers.students import _conv_bn, _normalize
from clareps.errors import ClarepsError


def _double(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv_bn(cin, cout), _conv_bn(cout, cout))


class MaskNet(nn.Module):
    """Encoder (width, 2 width, 4 width) and decoder with skip connections; ~7.4k * width^2 / 16 params."""

    def __init__(self, width: int = 16, in_channels: int = 3):
        super().__init__()
        self.normalize = _normalize(in_channels)
        self.enc1, self.enc2, self.enc3 = _double(in_channels, width), _double(width, 2 * width), \
            _double(2 * width, 4 * width)
        self.dec2, self.dec1 = _double(6 * width, 2 * width), _double(3 * width, width)
        self.pool, self.up = nn.MaxPool2d(2), nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Conv2d(width, 1, 1)

    @staticmethod
    def check_size(x: torch.Tensor) -> None:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ClarepsError(f"the mask judge needs image sides divisible by 4, got {tuple(x.shape[-2:])}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size(x)
        e1 = self.enc1(self.normalize(x))
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up(e3), e2], 1))
        return self.out(self.dec1(torch.cat([self.up(d2), e1], 1)))


SEGMENTERS = {"mask-net": MaskNet}
