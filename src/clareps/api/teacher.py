"""``Teacher``: a class-conditional diffusion model you hold, sample from and canonicalize with."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from clareps.api.canonical import Canonical
from clareps.clarid.canonical import ClaridConfig
from clareps.errors import ClarepsError

Labels = Sequence[int] | torch.Tensor


class Teacher:
    """A class-conditional denoiser ``model(x, t, y)`` (carrying its noise schedule), its metadata, where it
    came from and its kind: ``clareps`` (our U-Net), ``unet2d`` (a diffusers UNet2DModel) or ``dit`` (a DiT,
    with its VAE when it has one). ``clarid`` is the CLARID preset for that kind; keywords override it."""

    def __init__(self, model: nn.Module, meta: dict, path: Path, kind: str):
        self.model, self.meta, self.path, self.kind = model, meta, path, kind

    @classmethod
    def load(cls, spec: str | Path | None = None, device: str = "auto",
             classes: list[int] | None = None) -> "Teacher":
        """The shipped teacher (``spec=None``), a clareps ``.safetensors`` or its run folder, or a local
        diffusers folder (a UNet2DModel, or a DiT pipeline: transformer/ + vae/ + scheduler/). ``classes``
        picks a subset of a diffusers model's classes (its own label ids), which then become 0..len-1."""
        from clareps.adapters.loading import load_teacher_any, teacher_kind
        from clareps.device import resolve_device
        from clareps.paths import default_teacher, teacher_file

        spec = default_teacher() if spec is None else spec
        kind = teacher_kind(spec)  # refuses a missing path or an unknown model before loading anything
        model, meta = load_teacher_any(spec, resolve_device(device), classes)
        path = Path(str(spec).removeprefix("diffusers:")) if kind != "clareps" else teacher_file(spec)
        return cls(model.eval(), meta, path, kind)

    def __repr__(self) -> str:
        return f"Teacher({self.kind}, {self.num_classes} classes, {self.path})"

    @property
    def schedule(self):
        return self.model.schedule

    @property
    def num_classes(self) -> int:
        return self.model.cfg.num_classes

    @property
    def image_size(self) -> int:
        """The side of the images it makes, in pixels (after the VAE's decoder, for a latent model)."""
        from clareps.diffusion.teacher import pixel_shape

        return int(pixel_shape(self.model)[-1])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def clarid(self) -> ClaridConfig:
        """The CLARID settings for this kind of teacher (``clarid/presets.py``)."""
        from clareps.clarid.presets import clarid_preset

        return clarid_preset(self.kind)

    def settings(self, base: ClaridConfig | None = None, **overrides: Any) -> ClaridConfig:
        """``base`` (default: this kind's preset) with keyword overrides, validated: ``settings(k=0, steps=10)``."""
        from clareps.clarid.presets import clarid_settings

        cfg = clarid_settings(base or self.kind, **overrides)
        latent_dim = self.model.cfg.in_channels * self.model.cfg.image_size ** 2
        if cfg.k > latent_dim:
            raise ClarepsError(f"k={cfg.k} exceeds the teacher's latent dimension {latent_dim}")
        return cfg

    def labels(self, labels: Labels) -> torch.Tensor:
        """Class labels as a (N,) int64 tensor, each checked to lie in [0, num_classes)."""
        y = torch.as_tensor(labels)
        if y.ndim != 1 or len(y) == 0 or y.is_floating_point() or y.is_complex():
            raise ClarepsError(f"labels must be a non-empty list of class ids, got {_describe(labels)}")
        bad = y[(y < 0) | (y >= self.num_classes)]
        if len(bad):
            raise ClarepsError(f"class {int(bad[0])} is out of range: this teacher has classes 0..{self.num_classes - 1}")
        return y.long()

    def sample(self, labels: Labels, steps: int = 50, w: float = 3.0, seed: int = 0, batch_size: int = 250,
               quiet: bool = True) -> torch.Tensor:
        """Plain class-conditional DDIM samples (N, C, H, W) in [0, 1] of the classes ``labels``, with
        classifier-free guidance ``w``, from one noise stream seeded by ``seed``."""
        from clareps.diffusion.cli import check_sampling, check_steps
        from clareps.diffusion.sampler import sample_labels

        check_sampling("sample", 1, w, steps, seed)
        check_steps("sample", steps, self.schedule.T)
        return sample_labels(self.model, self.labels(labels), w, steps, seed, batch_size, quiet=quiet)

    def canonical(self, labels: Labels | None = None, images: torch.Tensor | None = None, seed: int = 0,
                  settings: ClaridConfig | None = None, batch_size: int | None = None, **clarid: Any) -> Canonical:
        """Canonical samples of the classes ``labels``: from Gaussian noise (seeded by ``seed``; ``images``
        None), or from ``images`` (N, C, H, W) in [0, 1] (DDIM-inverted to t_e with their class). Sample
        to t_e with the class, remove the top-k Jacobian directions of the features, decode with guidance
        w. ``clarid``: CLARID settings as keywords over this kind's preset (``k=``, ``t_e=``, ``w=``,
        ``tap=``, ``steps=``, ``tol=``, ``max_iter=``, ...); ``k=0`` is the guidance-only control (the same
        noise, the same path, no projection). Only the items asked for are computed, ``batch_size`` at a
        time (default: all at once; fewer items at a time need less GPU memory)."""
        from clareps.clarid import canonical as engine
        from clareps.diffusion.teacher import pixel_shape

        if labels is None:
            raise ClarepsError("labels= is required: one class per canonical sample, e.g. labels=[3] * 10")
        cfg = self.settings(settings, **clarid)
        y = self.labels(labels)
        if batch_size is not None and batch_size < 1:
            raise ClarepsError(f"batch_size must be >= 1, got {batch_size}")
        if images is None:
            m = self.model.cfg
            gen = torch.Generator().manual_seed(seed)
            sources = torch.randn((len(y), m.in_channels, m.image_size, m.image_size), generator=gen)
        else:
            want = tuple(pixel_shape(self.model))
            if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != want \
                    or len(images) != len(y):
                raise ClarepsError(f"images must be (N, {', '.join(map(str, want))}) in [0, 1] with one label "
                                   f"each; got {_describe(images)} and {len(y)} labels")
            sources = images.float()
        parts, step = [], batch_size or len(y)
        for i in range(0, len(y), step):
            yy, src = y[i:i + step].to(self.device), sources[i:i + step]
            x_te = (engine.random_latents(self.model, yy, cfg, src.to(self.device)) if images is None
                    else engine.matched_latents(self.model, src.to(self.device), yy, cfg))
            parts.append({k: v.cpu() for k, v in engine.canonicalize(self.model, x_te, yy, cfg).items()
                          if k in ("images", "features", "latents", "singular_values")})
        out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        meta = {"settings": cfg.model_dump(mode="json"), "source": "noise" if images is None else "images",
                "seed": seed, "teacher": str(self.path), "teacher_kind": self.kind}
        return Canonical(out["images"], y, out["features"], out["latents"], out["singular_values"], meta)


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else repr(value)[:60]
