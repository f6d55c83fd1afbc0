"""What a bank shows: class separability of its features (k-means NMI and its chance-corrected
AMI, a linear probe beside the same probe on shuffled labels: ``clareps.measures``), class
consistency of its samples, how much of each input's background survived (matched banks), the selectivity
measures (bank/selectivity.py) and a summary of the engine record."""

from __future__ import annotations

import torch
from torch import nn

from clareps.bank.format import Bank
from clareps.bank.selectivity import correlated_background_rate, item_measures, matched_measures
from clareps.data.imageset import ImageSet
from clareps.measures import kmeans_scores, linear_probe
from clareps.classifiers.training import predict

# Bump when bank_measures gains or changes a measure: a metrics.json of an older version is recomputed
# (3: per-item measures in items.safetensors).
METRICS_VERSION = 3


def separability(feats: torch.Tensor, labels: torch.Tensor, clusters: int, prefix: str, seed: int = 0) -> dict:
    """NMI, AMI, the linear probe and the probe on labels shuffled with ``seed`` (its chance level)."""
    nmi, ami = kmeans_scores(feats, labels, clusters, seed)
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    return {f"nmi_{prefix}": nmi, f"ami_{prefix}": ami, f"probe_{prefix}": linear_probe(feats, labels, seed=seed),
            f"probe_{prefix}_shuffled": linear_probe(feats, shuffled, seed=seed)}


def record_summary(record: dict[str, torch.Tensor]) -> dict:
    """Means over the items of the engine record (over those the engine ran on for its entries);
    empty for a bank built before the record existed."""
    if not record:
        return {}
    ran = record["engine_iterations"] > 0
    out = {"removed_share": float(record["removed_share"].mean()),
           "removed_directions": float(record["removed_directions"].float().mean())}
    if "removal_scale" in record:
        out["removal_scale_max"] = float(record["removal_scale"].max())
    if ran.any():
        angle = record["engine_max_angle"][ran]
        out.update(engine_iterations=float(record["engine_iterations"][ran].float().mean()),
                   engine_converged=float(record["engine_converged"][ran].float().mean()),
                   engine_energy=float(record["engine_energy"][ran].mean()),
                   engine_max_angle_deg=float(torch.rad2deg(angle.nan_to_num(0.0)).max()))
    return out


def background_variance(images: torch.Tensor, bg: torch.Tensor) -> float:
    """Per-pixel variance across images, over background pixels, averaged."""
    w = bg.expand_as(images)
    count = w.sum(0).clamp_min(1)
    mean = (images * w).sum(0) / count
    var = (((images - mean) ** 2) * w).sum(0) / count
    return float((var * (w.sum(0) > 1)).sum() / (w.sum(0) > 1).sum().clamp_min(1))


def bank_measures(bank: Bank, train: ImageSet, judge: nn.Module, input_features: torch.Tensor | None = None,
                  bg_judge=None, mask_judge: nn.Module | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Every measure the inputs allow: the matched ones need a matched bank and the training masks;
    those of backgrounds the background-source judge, of shapes the mask judge. Returns the bank's
    metrics and the per-item measures behind them (``class_correct``, ``source_index`` and, for a
    matched bank, ``selectivity.item_measures``), which paired comparisons of banks read."""
    c = train.num_classes
    pred = predict(judge, bank.images)
    items = {"class_correct": (pred == bank.labels).float(), "source_index": bank.source_index}
    out = {"metrics_version": METRICS_VERSION, "items": len(bank),
           "class_consistency": float(items["class_correct"].mean()),
           **separability(bank.features, bank.labels, c, "features"), **record_summary(bank.record)}
    if input_features is not None:
        out.update(separability(input_features, bank.labels, c, "input_features"))
    matched = bank.source_index >= 0
    if matched.all() and train.masks is not None:
        src = bank.source_index
        real, fg = train.images[src], train.masks[src]
        bg = 1 - fg
        diff = (bank.images - real).abs()
        out["bg_change"] = float((diff * bg).sum() / (bg.sum() * 3))
        out["fg_change"] = float((diff * fg).sum() / (fg.sum() * 3).clamp_min(1))
        out["bg_variance_per_class"] = [background_variance(bank.images[bank.labels == k], bg[bank.labels == k])
                                        for k in range(c)]
        out["bg_variance"] = sum(out["bg_variance_per_class"]) / c
        source_bg = train.bg_source[src] if train.bg_source is not None else None
        items.update(item_measures(bank.images, real, fg, source_bg, bg_judge, mask_judge))
        out.update(matched_measures(bank.images, real, fg, bank.labels, source_bg, bg_judge, mask_judge, items))
    if bg_judge is not None and mask_judge is not None and train.bg_source is not None:
        has_bg = train.bg_source >= 0
        out["bg_correlated"] = correlated_background_rate(bank.images, bank.labels, bg_judge, mask_judge)
        out["bg_correlated_train"] = float((train.bg_source[has_bg] == train.labels[has_bg]).float().mean())
        out["bg_correlated_train_judged"] = correlated_background_rate(train.images[has_bg], train.labels[has_bg],
                                                                       bg_judge, mask_judge)
    return out, items


# What `bank show` and the report print of a bank's metrics: (label, key, format).
SUMMARY = (
    ("items", "items", "d"), ("class consistency (shape judge)", "class_consistency", "%"),
    ("AMI of k-means clusters", "ami_features", ".3f"), ("linear probe", "probe_features", "%"),
    ("linear probe, shuffled labels", "probe_features_shuffled", "%"),
    ("engine iterations (mean)", "engine_iterations", ".1f"), ("engine converged", "engine_converged", "%"),
    ("captured energy ||J V||^2 (mean)", "engine_energy", ".4g"),
    ("max principal angle, last two iterates (deg)", "engine_max_angle_deg", ".2f"),
    ("removed share of ||x_te||", "removed_share", ".3f"),
    ("shape IoU (mask judge vs source mask)", "shape_iou", ".3f"),
    ("shape IoU of the sources themselves", "shape_iou_sources", ".3f"),
    ("tint shift (mean fg colour)", "tint_shift", ".3f"),
    ("texture change (fg, tint removed)", "texture_change", ".3f"),
    ("fg change", "fg_change", ".3f"), ("bg change", "bg_change", ".3f"),
    ("bg source kept", "bg_source_kept", "%"), ("bg source kept, correlated sources", "bg_source_kept_correlated", "%"),
    ("bg source kept, other sources", "bg_source_kept_other", "%"),
    ("bg is the class's correlated source", "bg_correlated", "%"),
    ("  same, training set (true)", "bg_correlated_train", "%"),
    ("  same, training set (judged)", "bg_correlated_train_judged", "%"),
)


def summary_rows(metrics: dict) -> list[tuple[str, str]]:
    """(label, formatted value) of each SUMMARY entry present in ``metrics``."""
    out = []
    for label, key, fmt in SUMMARY:
        value = metrics.get(key)
        if value is None:
            continue
        out.append((label, f"{100 * value:.1f} %" if fmt == "%" else format(value, fmt)))
    return out
