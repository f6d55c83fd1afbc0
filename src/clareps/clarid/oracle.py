"""The oracle bank's images: training images whose background is replaced using the true masks.

What a perfectly selective CLARID could hand to distillation: the source's foreground, pixel for pixel,
on a background that carries no class. Two backgrounds:

- ``random``: the same foreground on a background crop from a uniformly random source (the benchmark's
  ``train-rand`` split, made by the same composer from the same foregrounds and masks): class-
  uninformative and drawn from the backgrounds the teacher was trained on.
- ``neutral``: one flat colour, the mean background pixel of the training set: no texture, no
  source, the same for every class.

Each is stored as the edited image itself (``oracle_pass: image``) or after the inversion to t_e and
k = 0 decoding that every bank goes through (``decoded``; bank.py).
"""

from __future__ import annotations

from typing import Literal

import torch

from clareps.config import StrictModel
from clareps.data.imageset import ImageSet
from clareps.data.spec import DataSpec, load_data
from clareps.errors import ClarepsError


class OracleConfig(StrictModel):
    background: Literal["random", "neutral"] = "random"
    oracle_pass: Literal["image", "decoded"] = "decoded"


def mean_background(train: ImageSet) -> torch.Tensor:
    """The mean background pixel (C,) over every training image's background (mask 0)."""
    bg = 1 - train.masks
    return (train.images * bg).sum((0, 2, 3)) / bg.sum().clamp_min(1)


class OracleImages:
    """Edited copies of the training images ``train`` (the data ``spec`` names) by their index."""

    def __init__(self, spec: DataSpec, train: ImageSet, cfg: OracleConfig):
        if train.masks is None:
            raise ClarepsError("an oracle bank needs foreground masks: the data has none (the default benchmark has)")
        self.train, self.cfg = train, cfg
        self.other: ImageSet | None = None
        if cfg.background == "random":
            if spec.kind != "benchmark" or spec.split != "train":
                raise ClarepsError("oracle.background=random takes its backgrounds from the benchmark's train-rand "
                                   "split: it needs data.kind=benchmark, split=train (or use background=neutral)")
            self.other = load_data(spec, "train-rand")
            if len(self.other) != len(train) or not torch.equal(self.other.masks, train.masks):
                raise ClarepsError("the benchmark's train-rand split does not hold the training foregrounds")
        else:
            self.colour = mean_background(train)

    def backgrounds(self, idx: torch.Tensor) -> torch.Tensor:
        """The replacement backgrounds of training images ``idx`` (N, C, H, W)."""
        if self.other is not None:
            return self.other.images[idx]
        shape = (len(idx), *self.train.images.shape[1:])
        return self.colour.view(1, -1, 1, 1).expand(shape).clone()

    def edit(self, idx: torch.Tensor) -> torch.Tensor:
        """The training images ``idx`` with their backgrounds replaced: the source inside its mask, the
        replacement outside."""
        m = self.train.masks[idx]
        return self.train.images[idx] * m + self.backgrounds(idx) * (1 - m)
