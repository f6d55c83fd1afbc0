"""The corruption table for small images: CIFAR-10-C's parameters per type and severity.

Hendrycks & Dietterich made CIFAR-10-C with milder settings than ImageNet-C (Gaussian noise sigma
.04-.10 instead of .08-.38, defocus radius .3-1.5 instead of 3-10, JPEG quality 80-40 instead of
25-7), so that a 32-pixel image keeps its content at severity 1. This module applies those
settings to images of any side up to 64 px; settings given in pixels at 32 px (glass blur's
shuffle, elastic warps, the frost texture's scale, fog's fractal) follow the image's side.

Every function takes one image as float64 (H, W, 3) in [0, 1] and draws from the global numpy
generator, which the caller seeds per image (corruptions.py); it returns float (H, W, 3) in [0, 1].
"""

from __future__ import annotations

import functools
import importlib.resources
from io import BytesIO

import numpy as np

SEVERITY = {  # type -> its parameter at severities 1..5 (CIFAR-10-C)
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],  # disk radius, its alias blur
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],  # sigma, max shift, rounds
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],  # radius, sigma
    "zoom_blur": [1.06, 1.11, 1.16, 1.21, 1.26],  # zooms 1, 1.01, ... below this
    "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],  # image weight, frost weight
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],  # fog strength, fractal decay
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                          (0.1, 0.03, 0.03)],  # displacement, its smoothness, affine jitter (x side)
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}  # fmt: skip
MAX_SIZE = 64  # above this, ImageNet-C's table is the default
MIN_SIZE = 8


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.filters import gaussian

    return gaussian(x, sigma=sigma, channel_axis=-1 if x.ndim == 3 else None)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    import cv2

    r = np.arange(-8, 9) if radius <= 8 else np.arange(-int(radius), int(radius) + 1)
    xx, yy = np.meshgrid(r, r)
    d = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32)
    d /= d.sum()
    return cv2.GaussianBlur(d, ksize=(3, 3) if radius <= 8 else (5, 5), sigmaX=alias_blur)


def _zoom_centre(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by ``factor`` and keep the image's size."""
    from scipy.ndimage import zoom

    h = x.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    z = zoom(x[top:top + ch, top:top + ch], (factor, factor) + (1,) * (x.ndim - 2), order=1)
    trim = (z.shape[0] - h) // 2
    return z[trim:trim + h, trim:trim + h]


def _motion(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    from imagecorruptions.corruptions import _motion_blur  # a numpy version of ImageMagick's motion blur

    return _motion_blur(x, radius, sigma, angle)


def gaussian_noise(x, c):
    return x + np.random.normal(size=x.shape, scale=c)


def shot_noise(x, c):
    return np.random.poisson(x * c) / c


def impulse_noise(x, c):
    from skimage.util import random_noise

    return random_noise(x, mode="s&p", amount=c, rng=int(np.random.randint(2 ** 31)))


def defocus_blur(x, c):
    import cv2

    k = _disk(*c)
    return np.stack([cv2.filter2D(x[..., d].astype(np.float32), -1, k) for d in range(3)], -1)


def glass_blur(x, c):
    sigma, delta, rounds = c
    h, w = x.shape[:2]
    y = np.round(np.clip(_gaussian(x, sigma), 0, 1) * 255) / 255
    # CIFAR-10-C visits the pixels (delta, h - delta] x (delta, w - delta] bottom-right first and meant
    # to swap each with one up to delta up-left; its swap of numpy views copies one way only, and the
    # released images were made so. With delta = 1 (every severity) each pixel reads one the round
    # has not yet written, so a round is one gather.
    assert delta == 1, "the gather below holds for shifts of at most one pixel"
    for _ in range(rounds):
        shift = np.random.randint(-delta, delta, size=(h - 1 - delta, w - 1 - delta, 2))
        ii, jj = np.meshgrid(np.arange(delta + 1, h), np.arange(delta + 1, w), indexing="ij")
        y[delta + 1:, delta + 1:] = y[ii + shift[..., 0], jj + shift[..., 1]]
    return _gaussian(y, sigma)


def motion_blur(x, c):
    return _motion(x, c[0], c[1], np.random.uniform(-45, 45))


def zoom_blur(x, c):
    factors = np.arange(1, c, 0.01)
    out = sum(_zoom_centre(x, f) for f in factors)
    return (x + out) / (len(factors) + 1)


def snow(x, c):
    import cv2

    h = x.shape[0]
    flakes = np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    flakes = _zoom_centre(flakes[..., None], c[2])[..., 0]
    flakes[flakes < c[3]] = 0
    flakes = np.round(np.clip(flakes, 0, 1) * 255) / 255
    flakes = np.clip(_motion(flakes, c[4], c[5], np.random.uniform(-135, -45)), 0, 1)[..., None]
    grey = cv2.cvtColor(x.astype(np.float32), cv2.COLOR_RGB2GRAY).reshape(h, h, 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, grey * 1.5 + 0.5)
    return x + flakes + np.rot90(flakes, k=2)


@functools.lru_cache(maxsize=16)
def _frost_texture(index: int, side: int) -> np.ndarray:
    """Frost texture ``index`` as RGB in [0, 1], shrunk as CIFAR-10-C does (5x for a 32-px image)."""
    import cv2

    name = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"][index]
    ref = importlib.resources.files("imagecorruptions") / "frost" / name
    with importlib.resources.as_file(ref) as path:
        tex = cv2.imread(str(path))[..., ::-1].astype(np.float64) / 255  # BGR -> RGB
    scale = 0.2 * side / 32
    return cv2.resize(tex, (0, 0), fx=scale, fy=scale)


def frost(x, c):
    h, w = x.shape[:2]
    tex = _frost_texture(int(np.random.randint(5)), h)
    top, left = np.random.randint(0, tex.shape[0] - h), np.random.randint(0, tex.shape[1] - w)
    return c[0] * x + c[1] * tex[top:top + h, left:left + w]


def fog(x, c):
    from imagecorruptions.corruptions import plasma_fractal

    h, w = x.shape[:2]
    size = 1 << max(int(np.ceil(np.log2(max(h, w)))), 1)
    top = x.max()
    x = x + c[0] * plasma_fractal(mapsize=size, wibbledecay=c[1])[:h, :w][..., None]
    return x * top / (top + c[0])


def brightness(x, c):
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return hsv2rgb(hsv)


def contrast(x, c):
    mean = x.mean(axis=(0, 1), keepdims=True)
    return (x - mean) * c + mean


def elastic_transform(x, c):
    import cv2
    from scipy.ndimage import map_coordinates

    h, w = x.shape[:2]
    alpha, sigma, jitter = (v * h for v in c)
    centre, half = np.float32([h, w]) // 2, min(h, w) // 3
    src = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src + np.random.uniform(-jitter, jitter, size=src.shape).astype(np.float32)
    x = cv2.warpAffine(x.astype(np.float32), cv2.getAffineTransform(src, dst), (w, h),
                       borderMode=cv2.BORDER_REFLECT_101)
    from skimage.filters import gaussian

    dx, dy = (gaussian(np.random.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
              if sigma > 0 else np.zeros((h, w)) for _ in range(2))
    yy, xx, zz = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    coords = (yy + dy[..., None]).reshape(-1), (xx + dx[..., None]).reshape(-1), zz.reshape(-1)
    return map_coordinates(x, coords, order=1, mode="reflect").reshape(x.shape)


def _pil(x):
    from PIL import Image

    return Image.fromarray(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8))


def pixelate(x, c):
    from PIL import Image

    h, w = x.shape[:2]
    small = _pil(x).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX), np.float64) / 255


def jpeg_compression(x, c):
    from PIL import Image

    buf = BytesIO()
    _pil(x).save(buf, "JPEG", quality=c)
    return np.asarray(Image.open(buf), np.float64) / 255


def corrupt_small(img_u8: np.ndarray, name: str, severity: int) -> np.ndarray:
    """One uint8 (H, W, 3) image corrupted with CIFAR-10-C's setting for ``severity`` (1..5), as uint8."""
    fn = globals()[name]
    out = fn(img_u8.astype(np.float64) / 255, SEVERITY[name][severity - 1])
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
