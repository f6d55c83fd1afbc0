"""Released CIFAR-10-C files in place of on-the-fly corruption.

The folder (the data key ``corruption_files``) holds ``<type>.npy`` of shape (5 x N, H, W, 3) uint8,
severities 1..5 one after the other, each block the N test images in their order, and
``labels.npy`` (5 x N,). The images a study evaluates are picked from the test split by index, so
the same rows are read from every block; the files' labels must match the split's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from clareps.errors import ClarepsError

SEVERITIES = 5


def _block(folder: Path, name: str, n_split: int) -> np.ndarray:
    path = folder / f"{name}.npy"
    if not path.is_file():
        raise ClarepsError(f"no released corruption file {path}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ClarepsError(f"unreadable corruption file {path}: {exc}".splitlines()[0]) from None
    if arr.ndim != 4 or arr.shape[0] != SEVERITIES * n_split or arr.shape[3] not in (1, 3) or arr.dtype != np.uint8:
        raise ClarepsError(f"{path} has shape {arr.shape} ({arr.dtype}); expected ({SEVERITIES * n_split}, H, W, 3) "
                           f"uint8: {SEVERITIES} severities x the {n_split} test images")
    return arr


def released_source(folder: str | Path, split_images: torch.Tensor, split_labels: torch.Tensor,
                    idx: np.ndarray) -> Callable[[str, list[int]], dict[int, torch.Tensor]]:
    """A reader of the folder's corrupted copies of the split's images at ``idx``, checked up front
    against the split (labels and image size)."""
    folder = Path(folder)
    n = len(split_labels)
    side = folder / "labels.npy"
    if not side.is_file():
        raise ClarepsError(f"{folder} holds no labels.npy: not a CIFAR-10-C folder")
    labels = np.load(side, allow_pickle=False)
    if labels.shape != (SEVERITIES * n,) or not all(np.array_equal(labels[k * n:(k + 1) * n], split_labels.numpy())
                                                    for k in range(SEVERITIES)):
        raise ClarepsError(f"{side} does not hold the labels of the {n} test images, once per severity")
    rows = np.asarray(idx, dtype=np.int64)
    clean = split_images[torch.from_numpy(rows)]

    def read(name: str, severities: list[int]) -> dict[int, torch.Tensor]:
        arr = _block(folder, name, n)
        if arr.shape[1:3] != tuple(split_images.shape[-2:]):
            raise ClarepsError(f"{folder / name}.npy holds {arr.shape[1]}x{arr.shape[2]} images, the split "
                               f"{split_images.shape[-2]}x{split_images.shape[-1]}")
        out = {}
        for s in severities:
            if s == 0:
                out[s] = clean.clone()
                continue
            x = torch.from_numpy(np.ascontiguousarray(arr[(s - 1) * n + rows])).permute(0, 3, 1, 2).float() / 255
            out[s] = x.mean(1, keepdim=True) if clean.shape[1] == 1 else x.contiguous()
        return out

    return read
