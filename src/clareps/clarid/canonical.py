"""CLARID for a batch: latents at t_e, extraneous directions, projection, decoding, features.

k = 0 is the guidance-only control: the very same path with no projection.
"""

from __future__ import annotations

import time
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from clareps.adapters.base import to_latent, to_pixels
from clareps.clarid.engine import top_subspace
from clareps.config import StrictModel
from clareps.device import Precision, autocast
from clareps.diffusion.sampler import ddim_run, decode, invert
from clareps.diffusion.schedule import CosineSchedule
from clareps.diffusion.taps import DEFAULT_TAP, run_to_tap


class ClaridConfig(StrictModel):
    t_e: float = Field(0.5, gt=0, le=1)  # extraction timestep, as a fraction of T
    tap: str = Field(DEFAULT_TAP, min_length=1)  # module path of the feature layer l
    k: int = Field(16, ge=0)  # extraneous directions removed (0: the guidance-only control)
    w: float = Field(3.0, ge=0)  # guidance scale for decoding (and for sampling down to t_e)
    steps: int = Field(50, ge=1)  # DDIM steps per full schedule (partial runs use the same density)
    norm_preserving: bool = False  # rescale x~ to the norm of x_{t_e}
    tol: float = Field(1e-3, gt=0)  # engine: relative change of singular values / energy
    max_iter: int = Field(30, ge=1)  # engine: iteration cap
    sampler_precision: Precision = "auto"  # sampling to t_e and decoding (bf16 autocast where native);
    # the engine, the features and DDIM inversion stay fp32


def timestep(sched: CosineSchedule, cfg: ClaridConfig) -> int:
    return sched.index(cfg.t_e)


def matched_latents(model: nn.Module, sched: CosineSchedule, images: torch.Tensor, labels: torch.Tensor,
                    cfg: ClaridConfig) -> torch.Tensor:
    """DDIM-invert images in [0, 1] (encoded first for a latent-space teacher) to t_e, given their class."""
    return invert(model, sched, to_latent(model, images * 2 - 1), labels, timestep(sched, cfg), cfg.steps)


def random_latents(model: nn.Module, sched: CosineSchedule, labels: torch.Tensor, cfg: ClaridConfig,
                   noise: torch.Tensor) -> torch.Tensor:
    """Gaussian noise at T-1 sampled down to t_e with the class and guidance w."""
    grid = sched.grid(timestep(sched, cfg), sched.T - 1, cfg.steps)[::-1]
    with autocast(noise.device, cfg.sampler_precision):
        return ddim_run(model, sched, noise, labels, grid, cfg.w, clip=True)


def project(x: torch.Tensor, vectors: torch.Tensor, norm_preserving: bool = False) -> torch.Tensor:
    """x~ = (I - V V^T) x per item; vectors (B, k, C, H, W) orthonormal when flattened."""
    flat, v = x.flatten(1), vectors.flatten(2)
    out = flat - torch.einsum("bk,bkd->bd", torch.einsum("bkd,bd->bk", v, flat), v)
    if norm_preserving:
        out = out * (flat.norm(dim=1, keepdim=True) / out.norm(dim=1, keepdim=True).clamp_min(1e-12))
    return out.view_as(x)


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, t: int, y: torch.Tensor, tap: str) -> torch.Tensor:
    tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    return run_to_tap(model, tap, x, tt, y).flatten(1).float()


def canonicalize(model: nn.Module, sched: CosineSchedule, x_te: torch.Tensor, labels: torch.Tensor,
                 cfg: ClaridConfig, init: torch.Tensor | None = None,
                 plain: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Project the top-k extraneous directions out of x_te, decode, and read features.

    `plain`, f(x_te) when the caller has it, is reused as the control's feature (k = 0: x~ = x_te).

    Returns latents (x~), images in [0, 1], features f(x~), singular values (B, k),
    engine iterations and per-item seconds (the batch's time split evenly).
    """
    start = time.perf_counter()
    t = timestep(sched, cfg)
    b = x_te.shape[0]
    if cfg.k > 0:
        sub = top_subspace(model, x_te, t, labels, cfg.k, cfg.tap, cfg.tol, cfg.max_iter, init=init)
        x_tilde = project(x_te, sub.vectors, cfg.norm_preserving)
        svals, iters = sub.singular_values, sub.iterations
    else:
        x_tilde = x_te.clone()
        svals, iters = x_te.new_zeros(b, 0), torch.zeros(b, dtype=torch.long)
    with autocast(x_te.device, cfg.sampler_precision):  # guided eps is fp32, so the DDIM moves stay fp32
        decoded = decode(model, sched, x_tilde, labels, t, cfg.steps, cfg.w)
    images = ((to_pixels(model, decoded) + 1) / 2).clamp(0, 1)
    feats = plain.clone() if cfg.k == 0 and plain is not None else features(model, x_tilde, t, labels, cfg.tap)
    seconds = torch.full((b,), (time.perf_counter() - start) / b)
    return {"latents": x_tilde, "images": images, "features": feats, "singular_values": svals,
            "iterations": iters, "seconds": seconds}


SourceKind = Literal["random", "matched"]
