"""Image grids as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from clareps.errors import ClarepsError
from clareps.io import atomic_write


def save_grid(
    images,
    path: str | Path,
    nrow: int = 10,
    pad: int = 2,
    scale: int = 2,
    row_labels: list[str] | None = None,
    pad_value: float = 1.0,
) -> Path:
    """Write images (N,C,H,W) in [0,1] as a PNG grid, ``nrow`` images a row, upscaled by ``scale``.

    ``row_labels`` (one per row) are drawn in a margin at the left.
    """
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or arr.shape[0] == 0:
        raise ClarepsError(f"save_grid needs images (N,C,H,W) with C in (1, 3) and N > 0, got {arr.shape}")
    if nrow < 1 or pad < 0 or scale < 1:
        raise ClarepsError(f"save_grid: bad layout nrow={nrow}, pad={pad}, scale={scale}")
    arr = np.nan_to_num(arr.astype(np.float32)).clip(0, 1)
    if arr.shape[1] == 1:
        arr = np.repeat(arr, 3, axis=1)
    n, _, h, w = arr.shape
    rows = -(-n // nrow)
    if row_labels is not None and len(row_labels) != rows:
        raise ClarepsError(f"save_grid: {len(row_labels)} row labels for {rows} rows")
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), pad_value, np.float32)
    for i in range(n):
        r, c = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = arr[i].transpose(1, 2, 0)
    img = Image.fromarray(np.rint(grid * 255).astype(np.uint8))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if row_labels is not None:
        img = _add_row_labels(img, row_labels, (h + pad) * scale, pad * scale)
    return atomic_write(path, lambda p: img.save(p, format="PNG"))


def _add_row_labels(img: Image.Image, labels: list[str], row_height: int, top: int) -> Image.Image:
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(img)
    width = max(probe.textbbox((0, 0), str(s), font=font)[2] for s in labels) + 8
    out = Image.new("RGB", (img.width + width, img.height), (255, 255, 255))
    out.paste(img, (width, 0))
    draw = ImageDraw.Draw(out)
    for r, text in enumerate(labels):
        box = draw.textbbox((0, 0), str(text), font=font)
        y = top + r * row_height + (row_height - (box[3] - box[1])) // 2 - box[1]
        draw.text((4, y), str(text), fill=(0, 0, 0), font=font)
    return out
