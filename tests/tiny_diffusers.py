"""Tiny diffusers models written to disk as a user's own would be (``save_pretrained``): a class-conditional
UNet2DModel folder and a DiT pipeline folder (transformer/ + vae/ + scheduler/). Seconds to write and run."""

from __future__ import annotations

from pathlib import Path

import torch


def write_unet2d(folder: Path, classes: int = 5, size: int = 8) -> Path:
    """A bare UNet2DModel folder (``size`` px RGB, ``classes`` classes + the null class) with its scheduler config."""
    import diffusers

    torch.manual_seed(0)
    diffusers.UNet2DModel(
        sample_size=size, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=classes + 1, attention_head_dim=8).save_pretrained(folder)
    diffusers.DDPMScheduler().save_pretrained(folder)
    return Path(folder)


def write_dit(folder: Path, classes: int = 5, size: int = 8) -> Path:
    """A DiT pipeline folder: a 2-layer DiT on 4-channel latents of a ``size`` px RGB VAE (latents of half
    that side), ``classes`` classes."""
    import diffusers

    torch.manual_seed(0)
    dit = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                          num_layers=2, sample_size=size // 2, patch_size=2,
                                          num_embeds_ada_norm=classes)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                                  down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2,
                                  layers_per_block=1, norm_num_groups=4, sample_size=size)
    folder = Path(folder)
    dit.save_pretrained(folder / "transformer")
    vae.save_pretrained(folder / "vae")
    diffusers.DDIMScheduler().save_pretrained(folder / "scheduler")
    return folder
