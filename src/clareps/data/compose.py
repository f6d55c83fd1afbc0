"""Generic composer: any masked foregrounds onto backgrounds with a class-source correlation rho."""

from __future__ import annotations

import zlib

import numpy as np

from clareps.data.backgrounds import BgJitter, crop_backgrounds
from clareps.errors import ClarepsError


def stream_id(name: str) -> int:
    """A stable integer for a named random stream (a split name, say)."""
    return zlib.crc32(name.encode())


def stream_rngs(seed: int, stream: str, n: int) -> list[np.random.Generator]:
    """One generator per index, keyed by (seed, stream, index): images never share randomness."""
    sid = stream_id(stream)
    return [np.random.default_rng([seed, sid, i]) for i in range(n)]


def choose_sources(
    labels: np.ndarray, num_sources: int, rho: float, rngs: list[np.random.Generator]
) -> np.ndarray:
    """Class c takes source c with probability rho, else one of the others uniformly.

    rho = 1/num_sources is exactly a uniformly random source; rho = 1 always source c.
    """
    if not 0.0 <= rho <= 1.0:
        raise ClarepsError(f"rho must lie in [0, 1], got {rho}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_sources):
        raise ClarepsError(f"labels must index the {num_sources} background sources (class c -> source c)")
    out = np.zeros(len(labels), np.int64)
    for i, (c, rng) in enumerate(zip(labels, rngs)):
        u, other = rng.random(), int(rng.integers(max(num_sources - 1, 1)))  # always draw both
        out[i] = c if (u < rho or num_sources == 1) else other + (other >= c)
    return out


def composite(fg: np.ndarray, masks: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Hard-mask composite of float images in [0,1] -> uint8 (N,H,W,3)."""
    m = masks[..., None].astype(np.float32)
    return to_uint8(fg * m + bg * (1 - m))


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)


def as_rgb_float(fg: np.ndarray) -> np.ndarray:
    """Foregrounds (N,H,W) or (N,H,W,3), uint8 or float in [0,1] -> float32 (N,H,W,3)."""
    fg = np.asarray(fg)
    if fg.dtype == np.uint8:
        fg = fg.astype(np.float32) / 255.0
    fg = fg.astype(np.float32)
    if fg.ndim == 3:
        fg = np.repeat(fg[..., None], 3, axis=3)
    if fg.ndim != 4 or fg.shape[-1] != 3:
        raise ClarepsError(f"foregrounds must be (N,H,W) or (N,H,W,3), got {fg.shape}")
    return fg


def compose(
    fg: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    sources: list[np.ndarray],
    rho: float,
    seed: int,
    *,
    stream: str = "train",
    jitter: BgJitter = BgJitter(),
) -> dict[str, np.ndarray]:
    """Put each foreground on a crop of a background source chosen with correlation ``rho``.

    ``sources[c]`` is class c's correlated source. Returns ``images`` uint8 (N,H,W,3), ``masks``
    uint8 (N,H,W), ``bg_source`` int64 (N,) and ``backgrounds`` float32 (N,H,W,3), the crops
    alone (what an "only background" variant shows).
    """
    fg = as_rgb_float(fg)
    masks = np.asarray(masks).astype(bool)
    labels = np.asarray(labels).astype(np.int64)
    n, h, w, _ = fg.shape
    if h != w:
        raise ClarepsError(f"foregrounds must be square, got {h}x{w}")
    if masks.shape != (n, h, w) or labels.shape != (n,):
        raise ClarepsError(f"masks {masks.shape} and labels {labels.shape} must match foregrounds {fg.shape}")
    rngs = stream_rngs(seed, stream, n)
    src = choose_sources(labels, len(sources), rho, rngs)
    bg = crop_backgrounds(sources, src, rngs, h, jitter)
    return {
        "images": composite(fg, masks, bg),
        "masks": masks.astype(np.uint8),
        "bg_source": src,
        "backgrounds": bg,
    }
