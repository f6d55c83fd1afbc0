"""The mask judge: a small segmentation net that predicts an image's foreground mask.

It is trained on the default benchmark's training split (whose masks are known) and judges
where the animal is in a generated image: `shape_iou` compares its mask of a canonical sample
with the source image's known mask, and the background-source judge reads the region outside it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from clareps.classifiers.checkpoint import load_classifier, save_classifier
from clareps.classifiers.mask_net import MaskNet
from clareps.classifiers.training import ClassifierRecipe, fit, write_timing
from clareps.config import to_plain
from clareps.data.spec import DataSpec, data_fingerprint, load_data
from clareps.device import resolve_device, resolve_precision
from clareps.errors import ClarepsError

MASK_JUDGE_FILE = "mask_judge.safetensors"
ROLE = "mask-judge"


class MaskJudgeConfig(ClassifierRecipe):
    arch: Literal["mask-net"] = "mask-net"
    width: int = Field(8, ge=1)
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-2, gt=0)
    data: DataSpec = Field(default_factory=lambda: DataSpec(split="train"))
    # test IoU is reported on each of these splits; the first one carries the bar
    eval_splits: list[str] = Field(default_factory=lambda: ["test-original", "test-mixed-rand"], min_length=1)


@torch.no_grad()
def predict_masks(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted foreground masks, float (N, 1, H, W) in {0, 1}, of images in [0, 1]."""
    device = next(model.parameters()).device
    model.eval()
    out = [(model(images[i:i + batch_size].to(device)) > 0).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else images.new_zeros(0, 1, *images.shape[2:])


def mask_iou(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-item IoU of two {0, 1} masks (N, 1, H, W); two empty masks agree fully (1.0)."""
    inter = (pred * true).flatten(1).sum(1)
    union = ((pred + true) > 0).float().flatten(1).sum(1)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def train_mask_judge(cfg: MaskJudgeConfig, out: str | Path, quiet: bool = False) -> tuple[Path, dict]:
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    train = load_data(cfg.data)
    tests = {split: load_data(cfg.data, split) for split in cfg.eval_splits}
    for name, data in {cfg.data.split: train, **tests}.items():
        if data.masks is None:
            raise ClarepsError(f"the mask judge needs foreground masks, and split {name!r} has none")
    MaskNet.check_size(train.images)  # before training
    torch.manual_seed(cfg.seed)
    model = MaskNet(cfg.width, train.images.shape[1])
    t0 = time.time()
    fit(model, train.images, train.masks, F.binary_cross_entropy_with_logits, cfg.epochs, cfg.batch_size, cfg.lr,
        seed=cfg.seed, precision=precision, device=device, quiet=quiet, label="mask judge", spatial_targets=True)
    metrics = {f"iou/{split}": float(mask_iou(predict_masks(model, data.images), data.masks).mean())
               for split, data in tests.items()}
    seconds = time.time() - t0
    metrics.update(n_eval=len(tests[cfg.eval_splits[0]]), device=str(device),
                   precision=precision, params=sum(p.numel() for p in model.parameters()))
    meta = {"arch": cfg.arch, "width": cfg.width, "in_channels": train.images.shape[1], "role": ROLE,
            "config": to_plain(cfg), "metrics": metrics, "data_fingerprint": data_fingerprint(cfg.data)}
    path = save_classifier(Path(out) / MASK_JUDGE_FILE, model.cpu(), meta)
    write_timing(path.parent, seconds, device, cfg.precision)  # beside the file: the same config, the same bytes
    return path, dict(metrics, train_seconds=seconds)


def load_mask_judge(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    model, meta = load_classifier(path, device)
    if meta.get("role") != ROLE:
        raise ClarepsError(f"{path} is not a mask judge (role={meta.get('role')!r})")
    return model, meta
