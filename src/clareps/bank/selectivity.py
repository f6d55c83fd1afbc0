"""Measures that can tell class-relevant from class-irrelevant change in a bank's samples.

The benchmark's animals carry a random tint per image, so a plain foreground change counts a
class-irrelevant recolouring as change of the animal. These split it, and split background
removal by whether the background was the class's spurious (correlated) one:

- ``shape_iou``: IoU of the source image's known mask with the mask judge's mask of the sample;
- ``tint_shift``: change of the mean foreground colour (per channel, in the source's mask);
- ``texture_change``: the rest of the foreground change once that mean shift is removed;
- ``bg_source_kept_{correlated,other}``: the background-source judge still finds the source's
  background, among items whose source background is / is not the class's correlated source;
- ``bg_correlated``: the background-source judge, on the region outside the mask judge's mask,
  names the class's correlated source (any bank; compare with the training set's rate).

In the default benchmark class c's correlated background source is source c.
"""

from __future__ import annotations

import torch

from clareps.classifiers.background_judge import predict_source
from clareps.classifiers.mask_judge import mask_iou, predict_masks


def colour_change(samples: torch.Tensor, sources: torch.Tensor, fg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item (tint_shift, texture_change) inside ``fg`` (N,1,H,W): the mean absolute change of the
    per-channel mean colour, and the mean absolute change of the pixels about their own means,
    both averaged over channels. Their sum bounds the mean absolute foreground change."""
    w = fg.expand_as(samples)
    count = w.sum((2, 3)).clamp_min(1)
    mean_s, mean_r = (samples * w).sum((2, 3)) / count, (sources * w).sum((2, 3)) / count
    tint = (mean_s - mean_r).abs().mean(1)
    rest = ((samples - mean_s[..., None, None]) - (sources - mean_r[..., None, None])).abs()
    return tint, ((rest * w).sum((2, 3)) / count).mean(1)


def _mean(values: torch.Tensor) -> float | None:
    return float(values.float().mean()) if len(values) else None


def _pooled(diff: torch.Tensor, region: torch.Tensor) -> float | None:
    """Mean of ``diff`` over the pixels (and channels) of ``region``; None for no pixel."""
    pixels = region.sum() * diff.shape[1]
    return float((diff * region).sum() / pixels) if pixels > 0 else None


def _region_mean(diff: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per item, the mean of ``diff`` over the pixels (and channels) of ``region`` (0 for none)."""
    return (diff * region).sum((1, 2, 3)) / (region.sum((1, 2, 3)) * diff.shape[1]).clamp_min(1)


def item_measures(samples: torch.Tensor, sources: torch.Tensor, fg: torch.Tensor, source_bg: torch.Tensor | None,
                  bg_judge=None, mask_judge=None) -> dict[str, torch.Tensor]:
    """Per item (N,): tint_shift, texture_change, fg_change and bg_change (mean absolute change inside
    the source's foreground / background), and where the judges allow, shape_iou and bg_source_kept
    (1 when the background-source judge still finds the source's background, else 0)."""
    tint, texture = colour_change(samples, sources, fg)
    diff, bg = (samples - sources).abs(), 1 - fg
    out = {"tint_shift": tint, "texture_change": texture,
           "fg_change": _region_mean(diff, fg), "bg_change": _region_mean(diff, bg)}
    if mask_judge is not None:
        out["shape_iou"] = mask_iou(predict_masks(mask_judge, samples), fg)
    if source_bg is not None and bg_judge is not None:
        out["bg_source_kept"] = (predict_source(bg_judge, samples, bg) == source_bg).float()
    return out


def matched_measures(samples: torch.Tensor, sources: torch.Tensor, fg: torch.Tensor, labels: torch.Tensor,
                     source_bg: torch.Tensor | None, bg_judge=None, mask_judge=None,
                     items: dict[str, torch.Tensor] | None = None) -> dict:
    """Measures of samples against their matched source images (fg: the sources' known masks;
    source_bg: the sources' background source indices); ``items``: their ``item_measures``, when
    already computed."""
    items = items if items is not None else item_measures(samples, sources, fg, source_bg, bg_judge, mask_judge)
    out = {"tint_shift": _mean(items["tint_shift"]), "texture_change": _mean(items["texture_change"])}
    if "shape_iou" in items:
        out["shape_iou"] = _mean(items["shape_iou"])
        out["shape_iou_sources"] = _mean(mask_iou(predict_masks(mask_judge, sources), fg))
    if source_bg is None:
        return out
    correlated = source_bg == labels
    diff, bg = (samples - sources).abs(), 1 - fg
    for name, pick in (("correlated", correlated), ("other", ~correlated)):
        out[f"bg_change_{name}"] = _pooled(diff[pick], bg[pick])
        out[f"items_bg_{name}"] = int(pick.sum())
    if "bg_source_kept" in items:
        kept = items["bg_source_kept"]
        out["bg_source_kept"] = _mean(kept)
        out["bg_source_kept_correlated"] = _mean(kept[correlated])
        out["bg_source_kept_other"] = _mean(kept[~correlated])
    return out


def correlated_background_rate(images: torch.Tensor, labels: torch.Tensor, bg_judge, mask_judge) -> float | None:
    """Share of images whose background (outside the mask judge's mask) the background-source judge
    assigns to the class's correlated source."""
    if not len(images):
        return None
    bg = 1 - predict_masks(mask_judge, images)
    return _mean(predict_source(bg_judge, images, bg) == labels)
