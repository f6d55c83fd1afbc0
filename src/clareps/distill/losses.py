"""The CaDistill loss terms (METHOD.md section 3), each a small function, and the projection head.

All take float32 tensors; call them outside bf16 autocast (the trainer casts first).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from clareps.errors import ClarepsError
from clareps.measures import linear_cka


class ProjectionHead(nn.Module):
    """Maps pooled student features (B, in_dim) into the teacher's feature space (B, out_dim).

    ``hidden=0`` gives a single linear map; otherwise Linear-ReLU-Linear.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        if hidden:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpatialHead(nn.Module):
    """Maps a student feature map (B, C_s, h, w) onto the teacher's map (C, H, W): resized by average
    pooling to (H, W), then 1x1 convolutions (``hidden=0``: one), flattened to (B, C*H*W)."""

    def __init__(self, in_channels: int, teacher_shape: tuple[int, int, int], hidden: int = 256):
        super().__init__()
        c, h, w = teacher_shape
        self.size = (h, w)
        if hidden:
            self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c, 1))
        else:
            self.net = nn.Conv2d(in_channels, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(F.adaptive_avg_pool2d(x, self.size)).flatten(1)


def align_loss(student: torch.Tensor, teacher: torch.Tensor,
               kind: Literal["cosine", "mse"] = "cosine") -> torch.Tensor:
    """L_align: mean over items of 1 - cos(s_i, t_i) (``cosine``) or of the squared error (``mse``)."""
    if student.shape != teacher.shape:
        raise ClarepsError(f"align_loss: projected student features {tuple(student.shape)} and teacher "
                           f"features {tuple(teacher.shape)} differ in shape")
    if kind == "cosine":
        return (1 - F.cosine_similarity(student, teacher, dim=1, eps=1e-8)).mean()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    raise ClarepsError(f"unknown align loss '{kind}' (use cosine or mse)")


def cano_loss(embeddings: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor,
              temperature: float = 0.1) -> torch.Tensor:
    """L_cano: cross-entropy of cosine similarities to the class prototypes, divided by a temperature.

    ``embeddings`` (B, D) are projected student features of real images, ``prototypes``
    (C, D) the mean canonical feature per class, ``labels`` (B,) in [0, C).
    """
    if temperature <= 0:
        raise ClarepsError(f"cano_loss temperature must be > 0, got {temperature}")
    logits = F.normalize(embeddings, dim=1) @ F.normalize(prototypes, dim=1).T
    return F.cross_entropy(logits / temperature, labels)


def cka_loss(x: torch.Tensor, y: torch.Tensor, estimator: Literal["biased", "unbiased"] = "biased") -> torch.Tensor:
    """L_cka = 1 - linear CKA: aligns the geometry of the two feature sets, not their values."""
    return 1 - linear_cka(x, y, estimator)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton's logit distillation: T^2 KL(softmax(t / T) || softmax(s / T)), mean over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True) * t * t
