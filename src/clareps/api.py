"""clareps from Python: the pipeline in a few calls, each the same code path as its CLI verb.

    import clareps
    teacher = clareps.load_teacher()                         # the shipped teacher (or a path)
    samples = clareps.canonical_samples(teacher, per_class=4)
    bank = clareps.build_bank("runs/py/bank", per_class=5)
    student = clareps.distill_student("cadistill", "runs/py/cadistill-s0", bank="runs/py/bank")
    scores = clareps.evaluate_student(student, mode="fast")

Settings default to the stage presets in ``configs/`` and take overrides as ``{"dotted.key": value}``
(the CLI's ``--set dotted.key=value``); errors are ``ClarepsError`` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from clareps.config import load_config
from clareps.paths import default_teacher, preset, teacher_file


@dataclass
class Teacher:
    """A class-conditional denoiser ``model(x, t, y)`` (carrying its noise schedule) and its metadata."""
    model: nn.Module
    meta: dict
    path: Path

    @property
    def schedule(self):
        return self.model.schedule

    @property
    def num_classes(self) -> int:
        return self.model.cfg.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


@dataclass
class Canonical:
    """CLARID's output for a batch: canonical samples in [0, 1] and what made them."""
    images: torch.Tensor  # (N, C, H, W) in [0, 1]
    labels: torch.Tensor  # (N,)
    features: torch.Tensor  # (N, D): the canonical features f(x~) at the tap
    latents: torch.Tensor  # (N, C, H, W): the projected latents x~ at t_e
    singular_values: torch.Tensor  # (N, k)


def _overrides(settings: dict[str, Any] | None) -> list[str]:
    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in (settings or {}).items()]


def load_teacher(path: str | Path | None = None, device: str = "auto", classes: list[int] | None = None) -> Teacher:
    """Our teacher (a ``.safetensors`` file or its run folder) or a local diffusers folder; None: the shipped one."""
    from clareps.device import resolve_device
    from clareps.adapters.loading import load_teacher_any

    spec = teacher_file(path) if path is not None else default_teacher()
    model, meta = load_teacher_any(spec, resolve_device(device), classes)
    return Teacher(model.eval(), meta, Path(spec))


def _clarid(settings: dict[str, Any]):
    """The bank preset's CLARID settings (t_e, k, w, tap, ...) with ``settings`` on top."""
    from clareps.clarid.bank import BankConfig

    overrides = _overrides({f"clarid.{k}": v for k, v in settings.items()})
    return load_config(BankConfig, preset("bank-default"), overrides).clarid


def canonical_samples(teacher: Teacher, per_class: int = 4, seed: int = 0, **clarid: Any) -> Canonical:
    """Canonical samples of every class from Gaussian noise: sample to t_e with the class, remove the
    top-k Jacobian directions, decode with guidance w. ``clarid``: t_e=, k=, w=, tap=, ... (k=0: the control)."""
    from clareps.errors import ClarepsError

    if per_class < 1:
        raise ClarepsError(f"per_class must be >= 1, got {per_class}")
    from clareps.clarid.canonical import canonicalize, random_latents

    cfg = _clarid(clarid)
    m = teacher.model.cfg
    labels = torch.arange(teacher.num_classes).repeat_interleave(per_class).to(teacher.device)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(labels), m.in_channels, m.image_size, m.image_size), generator=gen).to(teacher.device)
    x_te = random_latents(teacher.model, labels, cfg, noise)
    out = canonicalize(teacher.model, x_te, labels, cfg)
    return Canonical(out["images"].cpu(), labels.cpu(), out["features"].cpu(), out["latents"].cpu(),
                     out["singular_values"].cpu())


def canonicalize_images(teacher: Teacher, images: torch.Tensor, labels: torch.Tensor, **clarid: Any) -> Canonical:
    """Canonical versions of given images (N, C, H, W) in [0, 1] of classes ``labels``: DDIM-invert to t_e
    with the class, project, decode."""
    from clareps.clarid.canonical import canonicalize, matched_latents
    from clareps.errors import ClarepsError

    if images.ndim != 4 or len(images) != len(labels):
        raise ClarepsError(f"images must be (N, C, H, W) with one label each; got {tuple(images.shape)} and "
                           f"{len(labels)} labels")
    cfg = _clarid(clarid)
    y = labels.to(teacher.device)
    x_te = matched_latents(teacher.model, images.to(teacher.device), y, cfg)
    out = canonicalize(teacher.model, x_te, y, cfg)
    return Canonical(out["images"].cpu(), labels.cpu(), out["features"].cpu(), out["latents"].cpu(),
                     out["singular_values"].cpu())


def build_bank(out: str | Path, config: str | Path | None = None, quiet: bool = True, **settings: Any):
    """``clareps bank build``: a canonical bank in ``out`` (reused or resumed when it exists).
    ``settings``: top-level keys of the bank preset (kind=, per_class=, source=, teacher=, ...) or dotted
    ones via ``**{"clarid.k": 4}``. Returns the ``Bank``."""
    from clareps.clarid.bank import BankConfig, build_bank as build
    from clareps.paths import resolve_preset

    cfg = load_config(BankConfig, resolve_preset(config, "bank-default"), _overrides(settings))
    return build(cfg, out, quiet=quiet)[0]


def distill_student(method: str, out: str | Path, bank: str | Path | None = None, seed: int = 0,
                    config: str | Path | None = None, quiet: bool = True, **settings: Any) -> Path:
    """``clareps distill``: train a student by ``method`` (ce, feat-real, control, kd, cadistill) into ``out``;
    returns the student file. ``settings``: keys of the distill preset (epochs=, ``**{"student.width": 16}``)."""
    from clareps.distill.config import DistillConfig
    from clareps.distill.trainer import DistillTrainer
    from clareps.errors import ClarepsError
    from clareps.paths import resolve_preset

    extra = {"method": method, "seed": seed, **({"bank": str(bank)} if bank is not None else {}), **settings}
    cfg = load_config(DistillConfig, resolve_preset(config, "distill-default"), _overrides(extra))
    trainer = DistillTrainer(cfg, out, quiet=quiet)
    if not trainer.train():
        raise ClarepsError(f"{out}: training stopped at step {trainer.step} of {trainer.total_steps}")
    return trainer.student_path


def evaluate_student(student: str | Path, mode: str = "fast", config: str | Path | None = None,
                     quiet: bool = True, **settings: Any) -> dict:
    """``clareps evaluate``: a student's clean, background, robustness, corruption and saliency results
    (``mode``: a section of the evaluation preset: fast, demo, full), written beside it and returned."""
    from clareps.evaluate import suite
    from clareps.paths import resolve_preset

    cfg = suite.load_eval_config(resolve_preset(config, "evaluate-default"), mode, _overrides(settings))
    path = suite.resolve_student(student)
    results = suite.evaluate_student(path, cfg, mode=mode, quiet=quiet)
    suite.write_results(results, path.parent / suite.result_name(mode))
    return results


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 10) -> Path:
    """Write images (N, C, H, W) in [0, 1] as a PNG grid, ``nrow`` a row."""
    from clareps.grids import save_grid as grid

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return grid(images, path, nrow=nrow)
