"""Foregrounds: the animal-mnist silhouettes, placed, tinted and textured as RGB with masks."""

from __future__ import annotations

import colorsys
import gzip
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clareps.data.loaders import safe_unpickle
from clareps.errors import ClarepsError

ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
FG_STREAM = 1  # stream id for the per-silhouette generators (backgrounds use others)


def _animal_dir() -> Path:
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise ClarepsError("animal-mnist is not installed: pip install --no-deps animal-mnist==0.4")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"


@lru_cache(maxsize=1)
def load_animal_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 silhouettes (uint8 (10000,28,28)) and labels (int64 (10000,)), read-only."""
    folder = _animal_dir()
    out = []
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        path = folder / name
        if not path.exists():
            raise ClarepsError(f"animal-mnist file missing: {path}")
        try:
            raw = gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as exc:
            raise ClarepsError(f"cannot read {path}: {exc}") from None
        out.append(np.asarray(safe_unpickle(raw, path)))
    images, labels = out[0].astype(np.uint8), out[1].astype(np.int64)
    if images.shape != (10000, 28, 28) or labels.shape != (10000,):
        raise ClarepsError(f"unexpected animal-mnist shapes {images.shape}, {labels.shape}")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@dataclass(frozen=True)
class FgStyle:
    """How silhouettes become RGB foregrounds."""

    margin: int = 2  # the silhouette spans size - 2*margin pixels
    shift: int = 2  # max random shift from centre, in pixels
    tint_min_value: float = 0.75  # HSV value of the tint: light colours only
    tint_max_saturation: float = 0.6
    texture: float = 0.2  # amplitude of the multiplicative low-frequency texture (0: none)
    texture_cells: int = 4  # the texture is a cells x cells noise grid, upsampled smoothly
    outline: float = 0.3  # darken the silhouette's edge pixels by this fraction, so pale animals
    # stay visible on pale backgrounds (0: no outline)


def render_foregrounds(
    gray: np.ndarray, ids: np.ndarray, size: int, seed: int, style: FgStyle = FgStyle()
) -> tuple[np.ndarray, np.ndarray]:
    """Silhouettes ``gray`` (N,h,w uint8) -> RGB foregrounds (N,size,size,3 float32) and masks (bool).

    Each image's randomness comes from a generator keyed by (seed, FG_STREAM, ids[i]), so a
    silhouette looks the same in every split and build that uses it.
    """
    n = len(gray)
    side = size - 2 * style.margin
    if side < 4:
        raise ClarepsError(f"image size {size} is too small for a margin of {style.margin}")
    sil = torch.from_numpy(np.ascontiguousarray(gray)).float()[:, None] / 255.0
    if sil.shape[-1] != side or sil.shape[-2] != side:
        sil = F.interpolate(sil, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    sil_mask = (sil[:, 0] > 0.5).numpy()

    masks = np.zeros((n, size, size), bool)
    tints = np.zeros((n, 3), np.float32)
    cells = style.texture_cells
    noise = np.zeros((n, 1, cells, cells), np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, FG_STREAM, int(ids[i])])
        dy, dx = rng.integers(-style.shift, style.shift + 1, size=2)
        h, s = rng.random(), rng.uniform(0.0, style.tint_max_saturation)
        v = rng.uniform(style.tint_min_value, 1.0)
        tints[i] = colorsys.hsv_to_rgb(h, s, v)
        noise[i, 0] = rng.standard_normal((cells, cells))
        _paste(masks[i], sil_mask[i], style.margin + dy, style.margin + dx)

    field = F.interpolate(torch.from_numpy(noise), size=(size, size), mode="bicubic", align_corners=False)
    shade = 1.0 + style.texture * field[:, 0].numpy().clip(-2, 2) / 2
    fg = (tints[:, None, None, :] * shade[..., None]).clip(0, 1).astype(np.float32)
    fg *= (masks * (1.0 - style.outline * _edges(masks))).astype(np.float32)[..., None]
    return fg, masks


def _edges(masks: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask (the image border counts as outside)."""
    p = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    interior = p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
    return masks & ~interior


def _paste(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """Paste ``patch`` at (top, left), clipping whatever falls outside ``canvas``."""
    h, w = patch.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
