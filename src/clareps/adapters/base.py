"""The teacher interface CLARID, the bank builder and distillation rely on, and its helpers.

A teacher is an ``nn.Module`` with

- ``forward(x, t, y) -> eps``: x (B, C, H, W) in the space diffusion runs in, t (B,) integer
  timesteps of its schedule, y (B,) class labels where ``null_class`` is the unconditional one;
- ``null_class`` and ``cfg.in_channels``, ``cfg.image_size``, ``cfg.num_classes``;
- feature taps by module path (forward hooks, see ``clareps.taps``);
- optionally ``encode(pixels) -> latents`` and ``decode(latents) -> pixels``, pixels in [-1, 1],
  when diffusion runs in a VAE's latent space; without them the two spaces are the same.

Our own ``UNet`` satisfies it as it is; external models are wrapped by ``ExternalTeacher``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from clareps.diffusion.schedule import CosineSchedule
from clareps.errors import ClarepsError


@dataclass(frozen=True)
class TeacherShape:
    """What the sampler and bank builder read from ``teacher.cfg`` (latent-space geometry)."""

    in_channels: int
    image_size: int
    num_classes: int


@runtime_checkable
class Teacher(Protocol):
    null_class: int
    cfg: object

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


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


class TabulatedSchedule(CosineSchedule):
    """A schedule given by its ``alpha_bar`` table (an external model's training schedule)."""

    def __init__(self, alpha_bar: torch.Tensor):  # noqa: D107 - no cosine table to build
        self.T = int(alpha_bar.shape[0])
        self.alpha_bar = alpha_bar.detach().float().cpu()


class ExternalTeacher(nn.Module):
    """Base of the adapters: class mapping, prediction-type conversion and tap aliases.

    ``class_ids[c]`` is the model's own label for our class c (a subset of its classes, e.g.
    ten ImageNet classes of a 1000-class DiT), and ``class_ids[num_classes]`` its null class,
    so callers see labels 0..num_classes with ``null_class = num_classes`` as for our U-Net.
    """

    tap_aliases: dict[str, str] = {}

    def __init__(self, own_classes: int, own_null: int, classes: list[int] | None, alpha_bar: torch.Tensor,
                 prediction_type: str):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ClarepsError(f"prediction_type {prediction_type!r} is not supported (epsilon, v_prediction)")
        ids = list(range(own_classes)) if classes is None else list(classes)
        bad = [c for c in ids if not 0 <= c < own_classes]
        if not ids or bad:
            raise ClarepsError(f"teacher classes must lie in [0, {own_classes}); got {bad or ids}")
        self.register_buffer("class_ids", torch.tensor(ids + [own_null]), persistent=False)
        self.register_buffer("alpha_bar", alpha_bar.detach().float(), persistent=False)
        self.prediction_type = prediction_type
        self.null_class = len(ids)

    def own_labels(self, y: torch.Tensor) -> torch.Tensor:
        return self.class_ids[y]

    def to_eps(self, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise prediction from the model's raw output: a learned-variance half is dropped,
        a v-prediction converted (eps = sqrt(ab) v + sqrt(1 - ab) x_t)."""
        c = x.shape[1]
        if out.shape[1] == 2 * c:
            out = out[:, :c]
        if self.prediction_type == "v_prediction":
            ab = self.alpha_bar[t].view(-1, 1, 1, 1).to(out.dtype)
            out = ab.sqrt() * out + (1 - ab).sqrt() * x
        return out

    def get_submodule(self, target: str) -> nn.Module:
        """Module paths as usual, plus aliases such as ``mid`` for the model's bottleneck."""
        return super().get_submodule(self.tap_aliases.get(target, target))
