"""Teacher quality: class consistency under the shape judge, a judge-feature FID, and
DDIM inversion -> decoding reconstruction error."""

from __future__ import annotations

import time

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from clareps.data.imageset import ImageSet
from clareps.diffusion.sampler import decode, invert, sample_per_class
from clareps.diffusion.teacher import from_images, schedule_of, to_images
from clareps.classifiers.training import predict


class JudgeFeatures(nn.Module):
    """The judge's pooled penultimate features, as torchmetrics' FID expects a feature module."""

    def __init__(self, judge: nn.Module):
        super().__init__()
        self.judge = judge
        self.num_features = judge.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.judge.features(self.judge.normalize(x.to(next(self.judge.parameters()).device))).float()


def check_teacher(teacher: nn.Module, judge: nn.Module, real: ImageSet,
                  per_class: int = 100, w: float = 3.0, steps: int = 50, recon_t: float = 0.5,
                  n_recon: int = 100, seed: int = 0, quiet: bool = False) -> tuple[dict, torch.Tensor]:
    t0 = time.time()
    images, labels = sample_per_class(teacher, real.num_classes, per_class, w, steps, seed, quiet=quiet)
    pred = predict(judge, images)
    per_class_acc = [(pred[labels == c] == c).float().mean().item() for c in range(real.num_classes)]
    judge_device = next(judge.parameters()).device  # the metric's running sums live beside the judge
    fid = FrechetInceptionDistance(feature=JudgeFeatures(judge), normalize=True).to(judge_device)
    fid.update(real.images.to(judge_device), real=True)
    fid.update(images.to(judge_device), real=False)
    sample_seconds = time.time() - t0

    device = next(teacher.parameters()).device
    fewest = int(torch.bincount(real.labels, minlength=real.num_classes).min())
    x0 = real.per_class(max(1, min(fewest, n_recon // real.num_classes)), seed)
    x = from_images(teacher, x0.images.to(device))
    y = x0.labels.to(device)
    t_e = schedule_of(teacher).index(recon_t)
    rec = to_images(teacher, decode(teacher, invert(teacher, x, y, t_e, steps), y, t_e, steps))
    err = rec.cpu() - x0.images
    return {
        "class_consistency": (pred == labels).float().mean().item(),
        "class_consistency_per_class": per_class_acc,
        "fid_judge_features": float(fid.compute()),
        "recon_rmse": err.pow(2).mean().sqrt().item(),
        "recon_mae": err.abs().mean().item(),
        "settings": {"per_class": per_class, "w": w, "ddim_steps": steps, "seed": seed,
                     "fid_real_images": len(real), "recon_t_frac": recon_t, "recon_images": len(x0)},
        "seconds": time.time() - t0, "sample_seconds": sample_seconds,
    }, images
