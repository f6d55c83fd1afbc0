"""The background-source judge: which source image did a background come from?

Logistic regression on colour and texture statistics of the background region (the
complement of the foreground mask). On real images it identifies the source almost
always, so it measures whether a generated image kept its input's background.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clareps.data.imageset import ImageSet
from clareps.errors import ClarepsError


def background_stats(images: torch.Tensor, bg: torch.Tensor) -> np.ndarray:
    """(N, 42) features of the pixels where ``bg`` (N,1,H,W) is 1: per channel mean, std,
    mean horizontal and vertical gradient magnitude, and an 8-bin histogram."""
    w = bg.expand_as(images)
    count = w.sum((2, 3)).clamp_min(1)
    mean = (images * w).sum((2, 3)) / count
    std = (((images - mean[..., None, None]) ** 2) * w).sum((2, 3)).div(count).sqrt()
    gx = (images[..., :, 1:] - images[..., :, :-1]).abs() * w[..., :, 1:] * w[..., :, :-1]
    gy = (images[..., 1:, :] - images[..., :-1, :]).abs() * w[..., 1:, :] * w[..., :-1, :]
    grad = torch.cat([gx.sum((2, 3)), gy.sum((2, 3))], 1) / count.repeat(1, 2)
    level = (images * 8).clamp(max=7).floor()
    bins = torch.stack([((level == b).float() * w).sum((2, 3)) / count for b in range(8)], -1).flatten(1)
    return torch.cat([mean, std, grad, bins], 1).numpy()


def train_background_judge(data: ImageSet, seed: int = 0):
    if data.masks is None or data.bg_source is None:
        raise ClarepsError("the background judge needs images with masks and background sources")
    keep = data.bg_source >= 0
    x = background_stats(data.images[keep], 1 - data.masks[keep])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    return model.fit(x, data.bg_source[keep].numpy())


def predict_source(judge, images: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(judge.predict(background_stats(images, bg)))
