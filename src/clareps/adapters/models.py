"""Adapters for diffusers models: ``UNet2DModel`` with class embeddings, and DiT with its VAE."""

from __future__ import annotations

import torch
from torch import nn

from clareps.adapters.base import ExternalTeacher
from clareps.diffusion.teacher import TeacherShape
from clareps.errors import ClarepsError


def _size(value, what: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ClarepsError(f"{what} {value} is not square; clareps teachers take square images")
        value = value[0]
    if not isinstance(value, int):
        raise ClarepsError(f"{what} is missing from the model's config")
    return value


class LatentCodec(nn.Module):
    """A diffusers ``AutoencoderKL``: pixels in [-1, 1] <-> scaled latents (the posterior mean)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.scale = float(getattr(vae.config, "scaling_factor", None) or 1.0)
        self.shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return (self.vae.encode(pixels).latent_dist.mean - self.shift) * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.scale + self.shift).sample


class UNet2DTeacher(ExternalTeacher):
    """``UNet2DModel`` with ``num_class_embeds`` = classes + 1: its last embedding is the null class."""

    def __init__(self, unet: nn.Module, alpha_bar: torch.Tensor, prediction_type: str = "epsilon",
                 classes: list[int] | None = None):
        n = unet.config.num_class_embeds
        if not n or n < 2 or unet.config.class_embed_type is not None:
            raise ClarepsError("the UNet2DModel has no class embedding table (num_class_embeds with a null "
                               "class, class_embed_type None): it is not class-conditional")
        super().__init__(n - 1, n - 1, classes, alpha_bar, prediction_type)
        self.unet = unet
        self.cfg = TeacherShape(unet.config.in_channels, _size(unet.config.sample_size, "sample_size"),
                                self.null_class)
        self.tap_aliases = {"mid": "unet.mid_block"}

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.unet(x, t, class_labels=self.own_labels(y)).sample
        return self.to_eps(out, x, t)


class DiTTeacher(ExternalTeacher):
    """``DiTTransformer2DModel`` (learned sigma: the first half of its output channels is eps),
    diffusing in the latent space of its VAE when one is given. Its null class is label
    ``num_embeds_ada_norm`` (the extra row the label embedding keeps for guidance)."""

    def __init__(self, transformer: nn.Module, vae: nn.Module | None, alpha_bar: torch.Tensor,
                 prediction_type: str = "epsilon", classes: list[int] | None = None):
        n = transformer.config.num_embeds_ada_norm
        table = transformer.transformer_blocks[0].norm1.emb.class_embedder.embedding_table
        if table.num_embeddings != n + 1:
            raise ClarepsError("this DiT has no null-class embedding (trained without label dropout), "
                               "so it cannot do classifier-free guidance")
        super().__init__(n, n, classes, alpha_bar, prediction_type)
        self.transformer = transformer
        self.codec = LatentCodec(vae) if vae is not None else None
        size = _size(transformer.config.sample_size, "sample_size")
        self.cfg = TeacherShape(transformer.config.in_channels, size, self.null_class)
        factor = self.codec.factor if self.codec is not None else 1
        channels = vae.config.in_channels if vae is not None else transformer.config.in_channels
        self.pixel_shape = (channels, size * factor, size * factor)
        self.tap_aliases = {"mid": f"transformer.transformer_blocks.{(len(transformer.transformer_blocks) - 1) // 2}"}

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.transformer(x, timestep=t, class_labels=self.own_labels(y)).sample
        return self.to_eps(out, x, t)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels if self.codec is None else self.codec.encode(pixels)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents if self.codec is None else self.codec.decode(latents)
