"""External teachers: ``ExternalTeacher``, the base of the adapters that give diffusers models the
teacher interface of ``clareps.diffusion.teacher`` (class mapping, prediction type, tap aliases)."""

from __future__ import annotations

import torch
from torch import nn

from clareps.diffusion.schedule import Schedule
from clareps.errors import ClarepsError


class ExternalTeacher(nn.Module):
    """Base of the adapters: class mapping, prediction-type conversion and tap aliases.

    ``class_ids[c]`` is the model's own label for our class c (a subset of its classes, e.g.
    ten ImageNet classes of a 1000-class DiT), and ``class_ids[num_classes]`` its null class,
    so callers see labels 0..num_classes with ``null_class = num_classes`` as for our U-Net.
    ``schedule`` is the model's training schedule (its ``alpha_bar`` table), as our U-Net carries its own.
    """

    tap_aliases: dict[str, str] = {}

    def __init__(self, own_classes: int, own_null: int, classes: list[int] | None, alpha_bar: torch.Tensor,
                 prediction_type: str):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ClarepsError(f"prediction_type {prediction_type!r} is not supported (epsilon, v_prediction)")
        ids = list(range(own_classes)) if classes is None else list(classes)
        bad = [c for c in ids if not 0 <= c < own_classes]
        if not ids or bad:
            raise ClarepsError(f"teacher classes must lie in [0, {own_classes}); got {bad or ids}")
        self.register_buffer("class_ids", torch.tensor(ids + [own_null]), persistent=False)
        self.register_buffer("alpha_bar", alpha_bar.detach().float(), persistent=False)  # on the model's device
        self.schedule = Schedule.tabulated(alpha_bar)
        self.prediction_type = prediction_type
        self.null_class = len(ids)

    def own_labels(self, y: torch.Tensor) -> torch.Tensor:
        return self.class_ids[y]

    def to_eps(self, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise prediction from the model's raw output: a learned-variance half is dropped,
        a v-prediction converted (eps = sqrt(ab) v + sqrt(1 - ab) x_t)."""
        c = x.shape[1]
        if out.shape[1] == 2 * c:
            out = out[:, :c]
        if self.prediction_type == "v_prediction":
            ab = self.alpha_bar[t].view(-1, 1, 1, 1).to(out.dtype)
            out = ab.sqrt() * out + (1 - ab).sqrt() * x
        return out

    def get_submodule(self, target: str) -> nn.Module:
        """Module paths as usual, plus aliases such as ``mid`` for the model's bottleneck."""
        return super().get_submodule(self.tap_aliases.get(target, target))
