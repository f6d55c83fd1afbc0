"""Where a student looks: captum Saliency and Integrated Gradients, and the share of attribution
mass inside the foreground mask.

An attribution map is |attribution| summed over channels, for the true label. The share of an
image is (map * mask).sum() / map.sum(); a map that is zero everywhere (e.g. a constant model)
has no share and is counted apart. The mean mask area is reported beside the share: it is the
share that a map spread evenly over the image would get.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from pydantic import Field
from torch import nn

from clareps.config import StrictModel
from clareps.errors import ClarepsError

METHODS = ("saliency", "integrated-gradients")


class SaliencyConfig(StrictModel):
    methods: list[Literal["saliency", "integrated-gradients"]] = Field(default_factory=lambda: list(METHODS))
    n_images: int | None = Field(200, ge=1)  # None: the whole test set
    ig_steps: int = Field(32, ge=2)
    save_maps: int = Field(8, ge=0)  # maps of the first images kept for the report's overlays
    batch_size: int = Field(50, ge=1)


def _captum():
    try:
        from captum.attr import IntegratedGradients, Saliency
    except ImportError:
        raise ClarepsError("captum is not installed: pip install captum") from None
    return Saliency, IntegratedGradients


def attribution_maps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, method: str,
                     ig_steps: int = 32, batch_size: int = 50,
                     advance: Callable[[int], None] = lambda n: None) -> torch.Tensor:
    """(N, H, W) non-negative attribution maps of ``method`` for the true labels."""
    Saliency, IntegratedGradients = _captum()
    if method not in METHODS:
        raise ClarepsError(f"unknown attribution method {method!r} (known: {', '.join(METHODS)})")
    model.eval()
    device = next(model.parameters()).device
    maps = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device).requires_grad_(True)
        y = labels[i:i + batch_size].to(device)
        if method == "saliency":
            attr = Saliency(model).attribute(x, target=y, abs=True)
        else:  # black baseline, as in the paper's appendix and most saliency benchmarks
            attr = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=y,
                                                        n_steps=ig_steps, internal_batch_size=len(x) * 8)
        maps.append(attr.detach().abs().sum(1).cpu())
        advance(len(x))
    return torch.cat(maps) if maps else torch.zeros(0, *images.shape[-2:])


def foreground_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image: the share of attribution mass on the mask; NaN where the map is all zero."""
    m = masks.reshape(maps.shape).to(maps.dtype)
    total = maps.flatten(1).sum(1)
    inside = (maps * m).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.full_like(total, float("nan")))


def evaluate_saliency(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                      num_classes: int, cfg: SaliencyConfig,
                      advance: Callable[[int], None] = lambda n: None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Mean foreground share per method (and per class), plus the first ``save_maps`` maps."""
    out, kept = {"fg_area": float(masks.float().mean()), "target": "true label", "methods": {}}, {}
    for method in cfg.methods:
        maps = attribution_maps(model, images, labels, method, cfg.ig_steps, cfg.batch_size, advance)
        share = foreground_share(maps, masks)
        valid = ~torch.isnan(share)
        pc = []
        for c in range(num_classes):
            sel = valid & (labels == c)
            pc.append(float(share[sel].mean()) if sel.any() else None)
        out["methods"][method] = {"fg_share": float(share[valid].mean()) if valid.any() else None,
                                  "n": int(valid.sum()), "zero_maps": int((~valid).sum()), "per_class": pc,
                                  **({"ig_steps": cfg.ig_steps, "baseline": "zeros"}
                                     if method == "integrated-gradients" else {})}
        kept[method] = maps[:cfg.save_maps]
    return out, kept
