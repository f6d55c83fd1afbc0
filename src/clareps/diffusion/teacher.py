"""The teacher interface the sampler, CLARID, the bank builder and distillation rely on.

A teacher is one ``nn.Module`` that carries all a sampler needs:

- ``forward(x, t, y) -> eps``: x (B, C, H, W) in the space diffusion runs in, t (B,) integer
  timesteps of its schedule, y (B,) class labels where ``null_class`` is the unconditional one;
- ``schedule``: its noise schedule (``diffusion.schedule.Schedule``), set when it is loaded
  (``adapters.load_teacher_any``, the one loader) or trained, read through ``schedule_of``;
- ``null_class`` and ``cfg.in_channels``, ``cfg.image_size``, ``cfg.num_classes``;
- feature taps by module path (forward hooks, see ``clareps.taps``);
- optionally ``encode(pixels) -> latents`` and ``decode(latents) -> pixels``, pixels in [-1, 1],
  when diffusion runs in a VAE's latent space; without them the two spaces are the same.

Our own ``UNet`` satisfies it as it is; external models are wrapped by ``adapters.ExternalTeacher``.
The schedule is a plain attribute, not a wrapper module, so module paths (and the taps that name
them) stay those of the network. Images enter and leave a teacher through ``from_images`` /
``to_images``: the one place where [0, 1] images meet the teacher's [-1, 1] pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from clareps.diffusion.schedule import Schedule
from clareps.errors import ClarepsError


@dataclass(frozen=True)
class TeacherShape:
    """What the sampler and bank builder read from ``teacher.cfg`` (latent-space geometry)."""

    in_channels: int
    image_size: int
    num_classes: int


@runtime_checkable
class TeacherModel(Protocol):
    """What a teacher network is (the user-facing object that holds one is ``clareps.Teacher``)."""

    null_class: int
    cfg: object
    schedule: Schedule

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def schedule_of(model: nn.Module) -> Schedule:
    """The noise schedule the teacher carries."""
    schedule = getattr(model, "schedule", None)
    if not isinstance(schedule, Schedule):
        raise ClarepsError(f"this {type(model).__name__} carries no noise schedule: load it with clareps.adapters.load_teacher_any "
                           "(or give it one: UNet(cfg, Schedule.cosine(T)))")
    return schedule


@torch.no_grad()
def to_latent(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] to the space the teacher diffuses in (the identity for pixel-space teachers)."""
    encode = getattr(model, "encode", None)
    return encode(pixels) if callable(encode) else pixels


@torch.no_grad()
def to_pixels(model: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """The teacher's clean latents back to pixels in [-1, 1] (the identity for pixel-space teachers)."""
    decode = getattr(model, "decode", None)
    return decode(latents) if callable(decode) else latents


def pixel_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) of the images the teacher's latents decode to."""
    shape = getattr(model, "pixel_shape", None)
    if shape is not None:
        return tuple(shape)
    cfg = model.cfg
    return (cfg.in_channels, cfg.image_size, cfg.image_size)


@torch.no_grad()
def from_images(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] to the space the teacher diffuses in."""
    return to_latent(model, images * 2 - 1)


@torch.no_grad()
def to_images(model: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """The teacher's clean latents to images in [0, 1]."""
    return ((to_pixels(model, latents) + 1) / 2).clamp(0, 1)
