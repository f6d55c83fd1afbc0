"""Background sources (natural images that ship with scikit-image / scikit-learn) and jittered crops."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image

from clareps.errors import ClarepsError


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


# Every loader reads a file inside its installed package (checked: no network).
SOURCES: dict[str, Callable[[], np.ndarray]] = {
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "brick": _skimage("brick"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "chelsea": _skimage("chelsea"),
    "astronaut": _skimage("astronaut"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "moon": _skimage("moon"),
    "coins": _skimage("coins"),
    "camera": _skimage("camera"),
}
DEFAULT_SOURCES = ["grass", "gravel", "brick", "coffee", "rocket",
                   "hubble_deep_field", "chelsea", "astronaut", "china", "flower"]  # fmt: skip


@lru_cache(maxsize=None)
def load_source(name: str) -> np.ndarray:
    """Source ``name`` as a read-only uint8 (H, W, 3) array (grayscale repeated to RGB)."""
    if name not in SOURCES:
        raise ClarepsError(f"unknown background source {name!r}; known: {', '.join(SOURCES)}")
    try:
        img = np.asarray(SOURCES[name]())
    except Exception as exc:  # a missing package data file, a broken install
        raise ClarepsError(f"cannot load background source {name!r}: {exc}".splitlines()[0]) from None
    if img.dtype != np.uint8:
        img = (img.astype(np.float64) * (255 if img.max() <= 1 else 1)).clip(0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3])
    img.flags.writeable = False
    return img


@dataclass(frozen=True)
class BgJitter:
    """Within-source variation of background crops."""

    scale_min: float = 0.15  # crop side as a fraction of the source's shorter side
    scale_max: float = 0.6
    flip: bool = True  # random horizontal and vertical flips
    hue: float = 0.06  # max hue rotation, in turns
    brightness: float = 0.25  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2  # contrast factor drawn from [1 - c, 1 + c]


def crop_backgrounds(
    sources: list[np.ndarray], source_idx: np.ndarray, rngs: list[np.random.Generator], size: int,
    jitter: BgJitter = BgJitter(),
) -> np.ndarray:
    """One jittered crop per image: ``sources[source_idx[i]]`` with ``rngs[i]`` -> (N,size,size,3) float32."""
    pil = [Image.fromarray(np.asarray(s)) for s in sources]
    n = len(source_idx)
    out = np.zeros((n, size, size, 3), np.float32)
    angle = np.zeros(n)
    gain = np.ones(n)
    contrast = np.ones(n)
    for i in range(n):
        rng, im = rngs[i], pil[int(source_idx[i])]
        w, h = im.size
        side = max(float(size), rng.uniform(jitter.scale_min, jitter.scale_max) * min(w, h))
        x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
        flips = rng.random(2) < 0.5
        crop = np.asarray(im.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side)))
        if jitter.flip and flips[0]:
            crop = crop[:, ::-1]
        if jitter.flip and flips[1]:
            crop = crop[::-1]
        out[i] = crop
        angle[i] = rng.uniform(-jitter.hue, jitter.hue) * 2 * np.pi
        gain[i] = rng.uniform(1 - jitter.brightness, 1 + jitter.brightness)
        contrast[i] = rng.uniform(1 - jitter.contrast, 1 + jitter.contrast)
    out /= 255.0
    out = _rotate_hue(out, angle)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * contrast[:, None, None, None] + mean
    return (out * gain[:, None, None, None]).clip(0, 1).astype(np.float32)


_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _rotate_hue(rgb: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate hue by ``angle`` radians per image: a rotation of the chroma plane in YIQ space."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.zeros((len(angle), 3, 3))
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    full = np.linalg.inv(_RGB2YIQ) @ rot @ _RGB2YIQ  # (N, 3, 3), RGB -> RGB
    return np.einsum("nij,nhwj->nhwi", full.astype(np.float32), rgb)
