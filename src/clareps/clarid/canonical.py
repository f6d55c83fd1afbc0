"""CLARID for a batch: latents at t_e, extraneous directions, projection, decoding, features.

k = 0 is the guidance-only control: the very same path with no projection. Which directions
are removed (the Jacobian's, or a control of them) is ``clarid/directions.py``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Literal

import torch
from pydantic import Field, model_serializer
from torch import nn

from clareps.diffusion.teacher import from_images, schedule_of, to_images
from clareps.clarid.directions import ControlInputs, DirectionKind, no_removal, remove
from clareps.config import NULL_IS_A_NAME, StrictModel
from clareps.device import Precision, autocast
from clareps.diffusion.sampler import ddim_run, decode, invert
from clareps.taps import DEFAULT_TAP, run_to_tap


class ClaridConfig(StrictModel):
    t_e: float = Field(0.5, gt=0, le=1)  # extraction timestep, as a fraction of T
    tap: str = Field(DEFAULT_TAP, min_length=1)  # module path of the feature layer l
    k: int = Field(16, ge=0)  # extraneous directions removed (0: the guidance-only control)
    w: float = Field(3.0, ge=0)  # guidance scale for decoding (and for sampling down to t_e)
    w_to_te: float | None = Field(None, ge=0)  # guidance on the noise -> t_e leg of random sources (None: w)
    directions: DirectionKind = "jacobian"  # or a control of them: see clarid/directions.py
    match_removed_norm: bool = False  # a control removes the share of ||x_te|| the Jacobian top-k would
    feature_label: Annotated[Literal["class", "null"], NULL_IS_A_NAME] = "class"  # the label f (Jacobian, features) reads
    steps: int = Field(25, ge=1)  # DDIM steps per full schedule (partial runs use the same density)
    norm_preserving: bool = False  # rescale x~ to the norm of x_{t_e}
    tol: float = Field(3e-2, gt=0)  # engine: relative change of singular values / energy
    max_iter: int = Field(30, ge=1)  # engine: iteration cap
    sampler_precision: Precision = "auto"  # sampling to t_e and decoding (bf16 autocast where native);
    # the engine, the features and DDIM inversion stay fp32
    # the direction families' settings (clarid/families.py; unset: the family's default)
    contrast_eps: float | None = Field(None, gt=0)  # class-contrastive ridge, in units of J_g^T J_g's mean eigenvalue
    foreground_share: float | None = Field(None, gt=0, lt=1)  # region-restricted: share of tap positions
    mask_threshold: float | None = Field(None, ge=0, lt=1)  # mask-oracle: a cell's foreground share

    @model_serializer(mode="wrap")
    def _omit_unset_family_settings(self, handler):
        # Unset, they are left out, so configs and hashes of banks without them do not change.
        return {k: v for k, v in handler(self).items() if k not in FAMILY_SETTINGS or v is not None}


FAMILY_SETTINGS = ("contrast_eps", "foreground_share", "mask_threshold")


def timestep(model: nn.Module, cfg: ClaridConfig) -> int:
    """t_e as a timestep index of the teacher's schedule."""
    return schedule_of(model).index(cfg.t_e)


def feature_labels(model: nn.Module, labels: torch.Tensor, cfg: ClaridConfig) -> torch.Tensor:
    """The labels f(x, t_e, .) reads: the items' classes, or the null class (cfg.feature_label)."""
    return labels if cfg.feature_label == "class" else torch.full_like(labels, model.null_class)


def matched_latents(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: ClaridConfig) -> torch.Tensor:
    """DDIM-invert images in [0, 1] (encoded first for a latent-space teacher) to t_e, given their class."""
    return invert(model, from_images(model, images), labels, timestep(model, cfg), cfg.steps)


def random_latents(model: nn.Module, labels: torch.Tensor, cfg: ClaridConfig, noise: torch.Tensor) -> torch.Tensor:
    """Gaussian noise at T-1 sampled down to t_e with the class and guidance w_to_te (default: w)."""
    sched = schedule_of(model)
    grid = sched.grid(timestep(model, cfg), sched.T - 1, cfg.steps)[::-1]
    with autocast(noise.device, cfg.sampler_precision):
        w = cfg.w if cfg.w_to_te is None else cfg.w_to_te
        return ddim_run(model, noise, labels, grid, w, clip=True)


@torch.no_grad()
def feature_map(model: nn.Module, x: torch.Tensor, t: int, y: torch.Tensor, tap: str) -> torch.Tensor:
    """The tap's output f(x, t, y) as the network gives it, e.g. (B, C, H, W)."""
    tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    return run_to_tap(model, tap, x, tt, y)


def features(model: nn.Module, x: torch.Tensor, t: int, y: torch.Tensor, tap: str) -> torch.Tensor:
    """f(x, t, y) flattened per item, fp32: (B, D)."""
    return feature_map(model, x, t, y, tap).flatten(1).float()


def canonicalize(model: nn.Module, x_te: torch.Tensor, labels: torch.Tensor, cfg: ClaridConfig,
                 init: torch.Tensor | None = None, controls: ControlInputs | None = None) -> dict[str, torch.Tensor]:
    """Remove k extraneous directions (cfg.directions) from x_te, decode, and read features.

    `init`: the engine's start vectors (B, engine k, ...); `controls`: what a control needs.

    Returns latents (x~), images in [0, 1], features f(x~), input features f(x_te), singular values
    (B, engine k or 0), the engine record (``directions.engine_record``) and per-item seconds (the
    batch's time split evenly). f(x_te) costs no forward of its own where the engine ran at x_te (its
    VJP linearisation reads it) or k = 0 (x~ = x_te); only the controls that run no engine at x_te
    (random, low-frequency, shuffled without matching) read it separately.
    """
    start = time.perf_counter()
    t = timestep(model, cfg)
    b = x_te.shape[0]
    f_labels = feature_labels(model, labels, cfg)
    input_features = None
    if cfg.k > 0:
        controls = replace(controls or ControlInputs(), class_labels=labels)
        removal = remove(model, x_te, t, f_labels, cfg, init=init, inputs=controls)
        x_tilde, svals, record = removal.latents, removal.singular_values, removal.record
        input_features = removal.input_features
    else:
        x_tilde = x_te.clone()
        svals = x_te.new_zeros(b, 0)
        record = no_removal(b)
    with autocast(x_te.device, cfg.sampler_precision):  # guided eps is fp32, so the DDIM moves stay fp32
        decoded = decode(model, x_tilde, labels, t, cfg.steps, cfg.w)
    images = to_images(model, decoded)
    feats = features(model, x_tilde, t, f_labels, cfg.tap)
    if cfg.k == 0:
        input_features = feats.clone()  # a copy: safetensors refuses two entries that share storage
    elif input_features is None:
        input_features = features(model, x_te, t, f_labels, cfg.tap)
    seconds = torch.full((b,), (time.perf_counter() - start) / b)
    return {"latents": x_tilde, "images": images, "features": feats, "input_features": input_features.float(),
            "singular_values": svals, "record": record, "seconds": seconds}
