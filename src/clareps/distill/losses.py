"""The CaDistill loss terms (METHOD.md section 3), each a small function, and the projection head.

All take float32 tensors; call them outside bf16 autocast (the trainer casts first).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from clareps.errors import ClarepsError

EPS = 1e-12


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


def _gram(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1)
    x = x - x.mean(0, keepdim=True)
    return x @ x.T


def _hsic_biased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    # k and l are Gram matrices of centred features, so tr(K H L H) = tr(K L) = sum(K * L);
    # the 1 / (n - 1)^2 factor cancels in CKA and is left out.
    return (k * l).sum()


def _hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator of Song et al. (2012), eq. 5; needs n > 3."""
    n = k.shape[0]
    k = k - torch.diag_embed(torch.diagonal(k))
    l = l - torch.diag_embed(torch.diagonal(l))
    trace = (k * l).sum()
    sums = k.sum() * l.sum() / ((n - 1) * (n - 2))
    cross = 2 * (k.sum(0) @ l.sum(0)) / (n - 2)
    return (trace + sums - cross) / (n * (n - 3))


def linear_cka(x: torch.Tensor, y: torch.Tensor,
               estimator: Literal["biased", "unbiased"] = "biased") -> torch.Tensor:
    """Linear CKA between two sets of features of the same n items: x (n, d1), y (n, d2)."""
    if x.shape[0] != y.shape[0]:
        raise ClarepsError(f"linear_cka: x has {x.shape[0]} items, y has {y.shape[0]}")
    if estimator not in ("biased", "unbiased"):
        raise ClarepsError(f"unknown CKA estimator '{estimator}' (use biased or unbiased)")
    n = x.shape[0]
    if n < (4 if estimator == "unbiased" else 2):
        raise ClarepsError(f"linear_cka ({estimator}) needs at least {4 if estimator == 'unbiased' else 2} "
                           f"items, got {n}")
    hsic = _hsic_biased if estimator == "biased" else _hsic_unbiased
    k, l = _gram(x), _gram(y)
    denom = (hsic(k, k).clamp_min(0) * hsic(l, l).clamp_min(0)).sqrt().clamp_min(EPS)
    return hsic(k, l) / denom


def cka_loss(x: torch.Tensor, y: torch.Tensor, estimator: Literal["biased", "unbiased"] = "biased") -> torch.Tensor:
    """L_cka = 1 - linear CKA: aligns the geometry of the two feature sets, not their values."""
    return 1 - linear_cka(x, y, estimator)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton's logit distillation: T^2 KL(softmax(t / T) || softmax(s / T)), mean over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True) * t * t
