"""``Canonical``: CLARID's output for a batch, with the settings that made it; saved as safetensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from clareps.errors import ClarepsError

KIND = "clareps-canonical"
TENSORS = ("images", "labels", "features", "latents", "singular_values")


@dataclass
class Canonical:
    """Canonical samples and what made them (k = 0: the guidance-only control, the same path unprojected).

    ``images`` (N, C, H, W) in [0, 1]; ``labels`` (N,); ``features`` (N, D): f(x~) at the tap, flattened;
    ``latents`` (N, C, h, w): the projected latents x~ at t_e; ``singular_values`` (N, k) of the removed
    directions (N, 0 for the control); ``settings``: the CLARID settings (``ClaridConfig`` as a dict),
    ``source`` ("noise" or "images"), ``seed`` and the ``teacher`` it came from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor
    latents: torch.Tensor
    singular_values: torch.Tensor
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def settings(self) -> dict:
        return self.meta.get("settings", {})

    def grid(self, path: str | Path, nrow: int | None = None) -> Path:
        """The images as a PNG grid (``nrow`` a row; default: all in one row, at most 10)."""
        from clareps.grids import save_grid

        return save_grid(self.images, path, nrow=nrow or min(len(self), 10))

    def save(self, path: str | Path) -> Path:
        """A safetensors file with the tensors and the settings in its header, plus a JSON sidecar."""
        from clareps.io import save_tensors

        return save_tensors(path, {k: getattr(self, k) for k in TENSORS}, dict(self.meta, kind=KIND))

    @classmethod
    def load(cls, path: str | Path) -> "Canonical":
        from clareps.io import load_tensors

        tensors, meta = load_tensors(path)
        if meta.get("kind") != KIND or any(k not in tensors for k in TENSORS):
            raise ClarepsError(f"{path} holds no canonical samples (kind={meta.get('kind')!r})")
        keep = {k: v for k, v in meta.items() if k not in ("kind", "clareps_version", "tensors_digest",
                                                            "tensors_sha256")}
        return cls(**{k: tensors[k] for k in TENSORS}, meta=keep)
