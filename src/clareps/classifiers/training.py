"""Supervised training and prediction for classifiers (the shape judge, baselines)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from clareps.classifiers.students import training_memory_format
from clareps.config import Seed, StrictModel
from clareps.data.imageset import ImageSet
from clareps.device import Precision, autocast, hardware
from clareps.io import write_json
from clareps.progress import progress_bar


class ClassifierRecipe(StrictModel):
    """How a supervised classifier is trained (the shape judge, the KD teacher): `train_classifier`'s knobs."""
    arch: str = "small-cnn"
    width: int = Field(32, ge=1)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    seed: Seed = 0
    precision: Precision = "auto"
    device: str = "auto"


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2, flip: bool = True) -> torch.Tensor:
    """Per-image random crop after reflect padding (row shifts drawn first, then column shifts), and
    horizontal flip: every classifier's augmentation (students, the KD teacher, the judges)."""
    b, _, h, w = x.shape
    if pad:
        padded = F.pad(x, (pad,) * 4, mode="reflect")
        dy, dx = (torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device) for _ in range(2))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(b, device=x.device)[:, None, None, None],
                   torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
    if flip:
        mask = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def train_classifier(model: nn.Module, data: ImageSet, epochs: int, batch_size: int = 128,
                     lr: float = 2e-3, weight_decay: float = 5e-4, seed: int = 0,
                     precision: str = "auto", device: torch.device = torch.device("cpu"),
                     quiet: bool = False) -> nn.Module:
    """AdamW with a cosine schedule and crop+flip augmentation, cross-entropy."""
    return fit(model, data.images, data.labels, F.cross_entropy, epochs, batch_size, lr, weight_decay, seed,
               precision, device, quiet)


def fit(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn, epochs: int, batch_size: int,
        lr: float, weight_decay: float = 5e-4, seed: int = 0, precision: str = "auto",
        device: torch.device = torch.device("cpu"), quiet: bool = False, label: str = "classifier",
        spatial_targets: bool = False) -> nn.Module:
    """The training loop: AdamW, cosine schedule, crop+flip augmentation of the inputs (and of the
    targets with the same crop and flip when ``spatial_targets``, e.g. masks), ``loss_fn(out, y)``."""
    gen = torch.Generator().manual_seed(seed)
    model.to(device, memory_format=training_memory_format(model)).train()  # as the students (distill/trainer.py)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    x_all, y_all = inputs.to(device), targets.to(device)
    steps_per_epoch = math.ceil(len(x_all) / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    with progress_bar(label, total=total, quiet=quiet) as advance:
        for _ in range(epochs):
            perm = torch.randperm(len(x_all), generator=gen).to(device)
            for i in range(steps_per_epoch):
                idx = perm[i * batch_size:(i + 1) * batch_size]
                if spatial_targets:
                    x, y = augment(torch.cat([x_all[idx], y_all[idx]], 1), gen).split(
                        [x_all.shape[1], y_all.shape[1]], 1)
                else:
                    x, y = augment(x_all[idx], gen), y_all[idx]
                with autocast(device, precision):
                    loss = loss_fn(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                advance(1)
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted labels for images in [0, 1]."""
    device = next(model.parameters()).device
    model.eval()
    out = [model(images[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy(model: nn.Module, data: ImageSet) -> float:
    return (predict(model, data.images) == data.labels).float().mean().item()


def write_timing(folder: str | Path, seconds: float, device: torch.device, precision: str) -> Path:
    """A trained classifier's time and machine, in ``timing.json`` beside its file and not in its header,
    so the same config gives the same bytes (and what hashes the file is reused after a retrain)."""
    return write_json(Path(folder) / "timing.json", {"train_seconds": seconds, "hardware": hardware(device, precision)})
