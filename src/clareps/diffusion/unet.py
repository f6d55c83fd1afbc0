"""The class-conditional U-Net teacher, with module paths that feature taps can name.

Written for forward-mode AD: attention is plain matmul + softmax. GroupNorm is torch's fused
one: with torch 2.13 it measured as fast as a decomposed form under forward mode (which
benchmarks/clarid_engine.py keeps comparing, ``norm_step_ratio``).
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from clareps.config import StrictModel
from clareps.diffusion.schedule import Schedule


class UNetConfig(StrictModel):
    """Shape of the U-Net; ``image_size`` must halve cleanly at every level."""

    in_channels: int = Field(3, ge=1)
    image_size: int = Field(32, ge=1)
    num_classes: int = Field(10, ge=1)
    base_channels: int = Field(32, ge=2)
    channel_mult: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1, 2, 2], min_length=1)
    num_res_blocks: int = Field(1, ge=0)
    attn_resolutions: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [8])
    groups: int = Field(8, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _shapes_fit(self) -> "UNetConfig":
        levels = len(self.channel_mult)
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(f"image_size {self.image_size} cannot be halved {levels - 1} times "
                             f"(channel_mult {self.channel_mult})")
        if self.base_channels % 2:  # the sinusoidal time embedding has base_channels dimensions
            raise ValueError(f"base_channels must be even, got {self.base_channels}")
        if any((self.base_channels * m) % self.groups for m in [1, *self.channel_mult]):
            raise ValueError(f"channel counts must be multiples of groups={self.groups}")
        return self


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over pixels, as matmul + softmax (forward-mode AD safe)."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, hgt * wid).unbind(1)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)
        out = (v @ weights.transpose(1, 2)).reshape(b, c, hgt, wid)
        return x + self.proj(out)


class Level(nn.Module):
    """A list of blocks at one resolution that all take the conditioning embedding."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class MidBlock(nn.Module):
    """The bottleneck; its output is the default feature tap ("h-space")."""

    def __init__(self, ch: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.res1 = ResBlock(ch, ch, emb_dim, groups, dropout)
        self.attn = Attention(ch, groups)
        self.res2 = ResBlock(ch, ch, emb_dim, groups, dropout)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.res2(self.attn(self.res1(x, emb)), emb)


class UNet(nn.Module):
    """``eps = unet(x, t, y)``: x (B,C,H,W), t (B,) timestep indices, y (B,) labels.

    Label ``num_classes`` is the null class used for classifier-free guidance. ``schedule`` is the
    noise schedule the teacher was trained with (set when it is loaded or trained; the sampler and
    CLARID read it from here).
    """

    def __init__(self, cfg: UNetConfig, schedule: Schedule | None = None):
        super().__init__()
        self.cfg = cfg
        self.schedule = schedule
        ch0, g, drop = cfg.base_channels, cfg.groups, cfg.dropout
        emb_dim = 4 * ch0
        self.null_class = cfg.num_classes
        self.time_mlp = nn.Sequential(nn.Linear(ch0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch0, 3, padding=1)

        self.down = nn.ModuleList()
        skips, ch, res = [ch0], ch0, cfg.image_size
        for i, mult in enumerate(cfg.channel_mult):
            blocks: list[nn.Module] = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(ch, ch0 * mult, emb_dim, g, drop))
                ch = ch0 * mult
                if res in cfg.attn_resolutions:
                    blocks.append(Attention(ch, g))
                skips.append(ch)
            if i < len(cfg.channel_mult) - 1:
                blocks.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
                res //= 2
            self.down.append(Level(blocks))

        self.mid = MidBlock(ch, emb_dim, g, drop)

        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(cfg.channel_mult))):
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(ch + skips.pop(), ch0 * mult, emb_dim, g, drop))
                ch = ch0 * mult
                if res in cfg.attn_resolutions:
                    blocks.append(Attention(ch, g))
            if i > 0:
                blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                            nn.Conv2d(ch, ch, 3, padding=1)))
                res *= 2
            self.up.append(Level(blocks))

        self.norm_out = nn.GroupNorm(g, ch)
        self.conv_out = nn.Conv2d(ch, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.cfg.base_channels)) + self.class_emb(y)
        h = self.conv_in(x)
        hs = [h]
        for level in self.down:
            for block in level.blocks:
                h = block(h, emb) if isinstance(block, (ResBlock, Attention)) else block(h)
                if not isinstance(block, Attention):
                    hs.append(h)
                else:
                    hs[-1] = h
        h = self.mid(h, emb)
        for level in self.up:
            for block in level.blocks:
                if isinstance(block, ResBlock):
                    h = block(torch.cat([h, hs.pop()], dim=1), emb)
                elif isinstance(block, Attention):
                    h = block(h)
                else:
                    h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))
