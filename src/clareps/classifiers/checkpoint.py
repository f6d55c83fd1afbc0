"""One file format for every classifier (students, the KD teacher, the judges, the mask judge's
segmenter): safetensors weights with the architecture in the metadata, saved and loaded by one pair
of functions."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from clareps.classifiers.mask_net import SEGMENTERS
from clareps.classifiers.students import make_student
from clareps.errors import ClarepsError
from clareps.io import load_tensors, save_tensors
from clareps.state import load_state

CLASSIFIER_KIND = "clareps-classifier"


def save_classifier(path: str | Path, model: nn.Module, meta: dict) -> Path:
    """``meta`` names the architecture (arch, width, num_classes, in_channels) and whatever the role needs."""
    return save_tensors(path, model.state_dict(), dict(meta, kind=CLASSIFIER_KIND))


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """A frozen classifier in eval mode and its metadata; a file of another kind is a one-line error."""
    tensors, meta = load_tensors(path)
    if meta.get("kind") != CLASSIFIER_KIND:
        raise ClarepsError(f"{path} is not a clareps classifier checkpoint (kind={meta.get('kind')!r})")
    if meta.get("arch") in SEGMENTERS:  # one output per pixel: no classes
        model = SEGMENTERS[meta["arch"]](width=meta["width"], in_channels=meta.get("in_channels", 3))
    else:
        model = make_student(meta["arch"], meta["num_classes"], width=meta.get("width"),
                             in_channels=meta.get("in_channels", 3))
    load_state(model, tensors, str(path))
    return model.to(device).eval().requires_grad_(False), meta
