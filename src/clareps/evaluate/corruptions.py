"""Common corruptions (Hendrycks & Dietterich): 15 types x 5 severities, at the image's scale.

Two tables of settings: CIFAR-10-C's (small_corruptions.py) for images of 64 px and less, and
ImageNet-C's (imagecorruptions-imaug) above; ``table: auto`` picks by the image's side, ``cifar`` or
``imagenet`` force one. Every result names the table it used (results without the name predate the
choice and used ImageNet-C's). Released CIFAR-10-C files can stand in for on-the-fly corruption
(released_corruptions.py).

Corrupting is deterministic under a seed: each image's noise comes from a seed derived from
(seed, type, severity, image position) (for CIFAR-10-C's table, the same at every severity), and the
global numpy generator the library draws from is restored afterwards. Severity 0 is the clean image. The corrupted images do not depend on the
model, so they are cached on disk (keyed by the images' hash, the seed, the table and the library version)
and every student of a study is scored on the very same pixels.

mCE follows the paper with the ``ce`` student as the reference model:
CE_c = sum_s E_{c,s} / sum_s E^ref_{c,s}, mCE = mean_c CE_c (1.0: as robust as the reference).
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from clareps.config import StrictModel
from clareps.errors import ClarepsError
from clareps.classifiers.training import predict
from clareps.evaluate import small_corruptions

COMMON = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
          "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
          "jpeg_compression")  # fmt: skip
_SEEDED = ("glass_blur", "impulse_noise")  # take a seed argument (the others draw from np.random)
MIN_SIZE = 32  # imagecorruptions refuses smaller images
Table = Literal["auto", "cifar", "imagenet"]
TABLE_NAMES = {"cifar": "CIFAR-10-C", "imagenet": "ImageNet-C"}


class CorruptionConfig(StrictModel):
    types: list[str] = Field(default_factory=lambda: list(COMMON))
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    n_images: int | None = Field(1000, ge=1)  # None: the whole test set
    cache: bool = True
    table: Table = "auto"  # auto: CIFAR-10-C's settings up to 64 px, ImageNet-C's above

    @field_validator("types")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in COMMON]
        if unknown:
            raise ValueError(f"unknown corruption types {unknown}; known: {', '.join(COMMON)}")
        return v

    @field_validator("severities")
    @classmethod
    def _range(cls, v: list[int]) -> list[int]:
        if any(s not in range(0, 6) for s in v):
            raise ValueError("severities must lie in 0..5 (0: the clean image)")
        return v


def _corrupt_fn():
    try:
        from imagecorruptions import corrupt
    except ImportError as exc:
        raise ClarepsError(f"imagecorruptions is not usable ({exc}): pip install --no-deps "
                           "imagecorruptions-imaug==1.1.5 opencv-python-headless numba") from None
    return corrupt


def library_version() -> str:
    try:
        return version("imagecorruptions-imaug")
    except PackageNotFoundError:
        return "unknown"


def resolve_table(table: str, size: int) -> str:
    """The table a setting means for images of side ``size``: cifar or imagenet."""
    if table == "auto":
        return "cifar" if size <= small_corruptions.MAX_SIZE else "imagenet"
    if table not in TABLE_NAMES:
        raise ClarepsError(f"unknown corruption table {table!r}; choose auto, cifar or imagenet")
    return table


def table_of(result: dict) -> str:
    """The table a corruption result used; results written before tables were named used ImageNet-C's."""
    return result.get("table") or "imagenet"


def _image_seed(seed: int, name: str, severity: int, i: int, table: str = "imagenet") -> int:
    # CIFAR-10-C's table draws the same random numbers at every severity (the same frost crop, the same
    # noise, scaled): its severities then differ by their settings alone, not by the draw
    key = [seed, COMMON.index(name), severity, i] if table == "imagenet" else [seed, COMMON.index(name), i, 1]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def corrupt_images(images: torch.Tensor, name: str, severity: int, seed: int = 0, table: str = "auto") -> torch.Tensor:
    """Corrupted copies of ``images`` (N, C, H, W) in [0, 1] with ``table``'s settings; deterministic
    for a given seed."""
    if severity == 0:
        return images.clone()
    if name not in COMMON:
        raise ClarepsError(f"unknown corruption {name!r}")
    table = resolve_table(table, max(images.shape[-2:]))
    least = MIN_SIZE if table == "imagenet" else small_corruptions.MIN_SIZE
    if min(images.shape[-2:]) < least:
        raise ClarepsError(f"{TABLE_NAMES[table]} corruptions need images of at least {least} px, "
                           f"got {tuple(images.shape[-2:])}")
    if table == "cifar":
        def corrupt(img, severity, corruption_name, seed=None):
            rgb = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
            return small_corruptions.corrupt_small(rgb, corruption_name, severity)
    else:
        corrupt = _corrupt_fn()
    u8 = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.empty(u8.shape[:3] + (3,), np.uint8)
    state = np.random.get_state()
    try:
        for i, img in enumerate(u8):
            s = _image_seed(seed, name, severity, i, table)
            np.random.seed(s)
            kwargs = {"seed": s} if name in _SEEDED else {}
            out[i] = corrupt(np.ascontiguousarray(img if img.shape[2] == 3 else img[..., 0]),
                             severity=severity, corruption_name=name, **kwargs)
    finally:
        np.random.set_state(state)
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255
    return x.mean(1, keepdim=True) if images.shape[1] == 1 else x.contiguous()


def _cache_file(cache_dir: Path, images: torch.Tensor, name: str, severities: list[int], seed: int,
                table: str) -> Path:
    h = hashlib.sha256((images.clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes())
    # ImageNet-C's entries keep the key they had before there were two tables
    h.update(f"{name}|{severities}|{seed}|{library_version()}{'' if table == 'imagenet' else '|' + table}".encode())
    return cache_dir / f"{name}-{h.hexdigest()[:16]}.safetensors"


def corrupted_set(images: torch.Tensor, name: str, severities: list[int], seed: int,
                  cache_dir: Path | None, table: str = "auto") -> dict[int, torch.Tensor]:
    """Corrupted images per severity, from the disk cache when it holds them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from clareps.io import atomic_write

    table = resolve_table(table, max(images.shape[-2:]))
    path = _cache_file(cache_dir, images, name, severities, seed, table) if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            return {s: t.float() / 255 for s, t in
                    ((int(k), v) for k, v in load_file(str(path)).items())}
        except (SafetensorError, OSError, ValueError):
            path.unlink(missing_ok=True)  # a corrupt cache entry: rebuild it
    out = {s: corrupt_images(images, name, s, seed, table) for s in severities}
    if path is not None:
        u8 = {str(s): (x * 255).round().to(torch.uint8).contiguous() for s, x in out.items()}
        atomic_write(path, lambda p: save_file(u8, str(p)))
    return out


def evaluate_corruptions(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: CorruptionConfig,
                         seed: int = 0, cache_dir: Path | None = None, batch_size: int = 250,
                         advance: Callable[[int], None] = lambda n: None,
                         released: Callable[[str, list[int]], dict[int, torch.Tensor]] | None = None) -> dict:
    """Accuracy per type and severity, per severity, and the mean over all (type, severity) cells.
    ``released``: the corrupted images from files (name, severities -> images per severity) instead."""
    model.eval()
    table = "cifar10-c-files" if released is not None else resolve_table(cfg.table, max(images.shape[-2:]))
    clean = float((predict(model, images, batch_size) == labels).float().mean())
    acc: dict[str, list[float]] = {}
    for name in cfg.types:
        sets = released(name, list(cfg.severities)) if released is not None else \
            corrupted_set(images, name, list(cfg.severities), seed, cache_dir if cfg.cache else None, table)
        acc[name] = [float((predict(model, sets[s], batch_size) == labels).float().mean()) for s in cfg.severities]
        advance(len(cfg.severities))
    cells = [a for row in acc.values() for a, s in zip(row, cfg.severities) if s > 0]
    by_sev = {str(s): float(np.mean([acc[t][k] for t in cfg.types])) for k, s in enumerate(cfg.severities)}
    return {"clean_accuracy": clean, "severities": list(cfg.severities), "accuracy": acc,
            "per_type": {t: float(np.mean([a for a, s in zip(acc[t], cfg.severities) if s > 0] or [np.nan]))
                         for t in cfg.types},
            "per_severity": by_sev, "mean_accuracy": float(np.mean(cells)) if cells else None,
            "table": table,
            "library": "released files" if released is not None else
            "clareps small_corruptions" if table == "cifar" else f"imagecorruptions-imaug {library_version()}"}


def mce(result: dict, reference: dict) -> dict:
    """CE per type and mCE of ``result`` against a ``reference`` corruption result (e.g. the ce student)."""
    ce = {}
    for name, accs in result["accuracy"].items():
        ref = reference["accuracy"].get(name)
        if ref is None or reference["severities"] != result["severities"]:
            raise ClarepsError(f"the reference has no corruption '{name}' at severities {result['severities']}")
        if table_of(reference) != table_of(result):
            raise ClarepsError(f"the reference's corruptions used the {table_of(reference)} table, these the "
                               f"{table_of(result)} one: evaluate both with the same corruptions.table")
        keep = [k for k, s in enumerate(result["severities"]) if s > 0]
        err, ref_err = sum(1 - accs[k] for k in keep), sum(1 - ref[k] for k in keep)
        ce[name] = err / ref_err if ref_err > 0 else None
    vals = [v for v in ce.values() if v is not None]
    return {"ce": ce, "mce": float(np.mean(vals)) if vals else None}
