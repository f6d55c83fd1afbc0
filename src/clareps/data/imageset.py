"""ImageSet: the one in-memory dataset type every stage passes around."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from clareps.errors import ClarepsError


@dataclass
class ImageSet:
    """Images in [0,1] with labels, and optionally foreground masks and background sources.

    ``bg_source`` is -1 where an image has no background (e.g. ``test-only-fg``).
    """

    images: torch.Tensor  # float32 (N, C, H, W) in [0, 1]
    labels: torch.Tensor  # int64 (N,)
    masks: torch.Tensor | None = None  # float32 (N, 1, H, W) in {0, 1}
    bg_source: torch.Tensor | None = None  # int64 (N,)
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4:
            raise ClarepsError(f"ImageSet images must be a float32 tensor (N,C,H,W), got {_describe(x)}")
        n = x.shape[0]
        if x.shape[1] not in (1, 3):
            raise ClarepsError(f"ImageSet images must have 1 or 3 channels, got shape {tuple(x.shape)}")
        if n and (x.min() < 0 or x.max() > 1 or torch.isnan(x).any()):
            raise ClarepsError("ImageSet images must lie in [0, 1]")
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (n,):
            raise ClarepsError(f"ImageSet labels must be an int64 tensor of shape ({n},), got {_describe(y)}")
        if self.num_classes < 1:
            raise ClarepsError(f"ImageSet num_classes must be >= 1, got {self.num_classes}")
        if n and (y.min() < 0 or y.max() >= self.num_classes):
            raise ClarepsError(
                f"ImageSet labels must lie in [0, {self.num_classes}), got range [{int(y.min())}, {int(y.max())}]"
            )
        if not self.class_names:
            self.class_names = [str(i) for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ClarepsError(
                f"ImageSet has {len(self.class_names)} class names for {self.num_classes} classes"
            )
        m = self.masks
        if m is not None:
            want = (n, 1, x.shape[2], x.shape[3])
            if not isinstance(m, torch.Tensor) or m.dtype != torch.float32 or tuple(m.shape) != want:
                raise ClarepsError(f"ImageSet masks must be a float32 tensor of shape {want}, got {_describe(m)}")
            if not ((m == 0) | (m == 1)).all():
                raise ClarepsError("ImageSet masks must hold only 0 and 1")
        b = self.bg_source
        if b is not None and (not isinstance(b, torch.Tensor) or b.dtype != torch.int64 or tuple(b.shape) != (n,)):
            raise ClarepsError(f"ImageSet bg_source must be an int64 tensor of shape ({n},), got {_describe(b)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, idx) -> "ImageSet":
        """The images at ``idx`` (integer indices or a boolean mask), in that order."""
        idx = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.long().flatten()
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ClarepsError(f"subset index out of range for an ImageSet of {len(self)} images")
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            masks=pick(self.masks),
            bg_source=pick(self.bg_source),
            num_classes=self.num_classes,
            class_names=list(self.class_names),
        )

    def per_class(self, n: int, seed: int = 0) -> "ImageSet":
        """A balanced subset: ``n`` images of each class, class by class, drawn reproducibly."""
        rng = np.random.default_rng(seed)
        labels = self.labels.numpy()
        picks = []
        for c in range(self.num_classes):
            members = np.flatnonzero(labels == c)
            if len(members) < n:
                raise ClarepsError(
                    f"class {self.class_names[c]!r} has {len(members)} images, fewer than the {n} asked for"
                )
            picks.append(np.sort(rng.permutation(members)[:n]))
        return self.subset(np.concatenate(picks) if picks else np.zeros(0, np.int64))


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__
