"""Classifier-free guidance and deterministic DDIM: sampling, decoding and inversion.

Each takes only the teacher: its noise schedule comes with it (``diffusion.teacher``)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from clareps.diffusion.teacher import schedule_of, to_images
from clareps.progress import progress_bar


def guided_eps(model: nn.Module, x: torch.Tensor, t: int, y: torch.Tensor, w: float) -> torch.Tensor:
    """eps_uncond + w (eps_cond - eps_uncond); w = 1 is the plain conditional prediction."""
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    if w == 1.0:
        return model(x, tt, y).float()
    null = torch.full_like(y, model.null_class)
    eps = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null])).float()  # fp32 under autocast too
    cond, uncond = eps.chunk(2)
    return uncond + w * (cond - uncond)


def _ddim_move(x: torch.Tensor, eps: torch.Tensor, ab_from: torch.Tensor, ab_to: torch.Tensor,
               clip: bool) -> torch.Tensor:
    x0 = (x - (1 - ab_from).sqrt() * eps) / ab_from.sqrt()
    if clip:  # near T, 1/sqrt(alpha_bar) ~ 2e4 turns tiny eps errors into huge x0 errors
        x0 = x0.clamp(-1, 1)
        eps = (x - ab_from.sqrt() * x0) / (1 - ab_from).sqrt()
    return ab_to.sqrt() * x0 + (1 - ab_to).sqrt() * eps


@torch.no_grad()
def ddim_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, timesteps: list[int], w: float = 1.0,
             clip: bool = False, on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Deterministic DDIM along ``timesteps`` (descending: denoise; ascending: invert).

    Each move from t to t' uses the guided eps predicted at (x_t, t). ``clip`` keeps the
    predicted x0 in [-1, 1] (for sampling from noise); inversion and decoding leave it off
    so that they stay exact inverses of each other.
    """
    ab = schedule_of(model).alpha_bar.to(x.device)
    for i, (t_from, t_to) in enumerate(zip(timesteps[:-1], timesteps[1:])):
        eps = guided_eps(model, x, t_from, y, w)
        x = _ddim_move(x, eps, ab[t_from], ab[t_to], clip)
        if on_step is not None:
            on_step(i + 1, len(timesteps) - 1)
    return x


def invert(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, t_end: int, steps: int = 50,
           w: float = 1.0) -> torch.Tensor:
    """DDIM inversion of clean images ``x0`` (in [-1, 1]) to timestep ``t_end``."""
    return ddim_run(model, x0, y, schedule_of(model).grid(0, t_end, steps), w)


def decode(model: nn.Module, x_t: torch.Tensor, y: torch.Tensor, t_start: int, steps: int = 50,
           w: float = 1.0, **kw) -> torch.Tensor:
    """DDIM from timestep ``t_start`` down to a clean image (the exact reverse grid of invert)."""
    return ddim_run(model, x_t, y, schedule_of(model).grid(0, t_start, steps)[::-1], w, **kw)


def sample(model: nn.Module, y: torch.Tensor, steps: int = 50, w: float = 3.0,
           generator: torch.Generator | None = None, t_stop: int = 0, shape: tuple | None = None,
           **kw) -> torch.Tensor:
    """Sample from Gaussian noise at T-1 down to ``t_stop`` (0 gives clean images)."""
    cfg, sched = model.cfg, schedule_of(model)
    shape = shape or (cfg.in_channels, cfg.image_size, cfg.image_size)
    device = next(model.parameters()).device
    noise = torch.randn((y.shape[0], *shape), generator=generator, device="cpu").to(device)
    return ddim_run(model, noise, y, sched.grid(t_stop, sched.T - 1, steps)[::-1], w, clip=True, **kw)


def sample_labels(teacher: nn.Module, labels: torch.Tensor, w: float, steps: int, seed: int, batch: int = 250,
                  quiet: bool = False) -> torch.Tensor:
    """DDIM samples in [0, 1] of the classes ``labels``, from one noise stream seeded by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    device = next(teacher.parameters()).device
    out = []
    with progress_bar("sampling", total=len(labels), quiet=quiet) as advance:
        for i in range(0, len(labels), batch):
            y = labels[i:i + batch].to(device)
            out.append(to_images(teacher, sample(teacher, y, steps=steps, w=w, generator=gen)).cpu())
            advance(len(y))
    return torch.cat(out)


def sample_per_class(teacher: nn.Module, num_classes: int, per_class: int, w: float, steps: int, seed: int,
                     batch: int = 250, quiet: bool = False) -> tuple:
    """``per_class`` DDIM samples of each class in [0, 1], with their intended labels."""
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return sample_labels(teacher, labels, w, steps, seed, batch, quiet), labels
