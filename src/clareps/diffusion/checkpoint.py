"""Saving and loading the teacher (EMA weights + config) and full training state."""

from __future__ import annotations

from pathlib import Path

import torch

from clareps.config import build_config
from clareps.diffusion.schedule import Schedule
from clareps.diffusion.unet import UNet, UNetConfig
from clareps.errors import ClarepsError
from clareps.io import load_tensors, save_tensors
from clareps.state import load_state
from clareps.paths import teacher_file

TEACHER_KIND = "clareps-teacher"


def save_teacher(path: str | Path, model: UNet, T: int, meta: dict) -> Path:
    meta = dict(meta, kind=TEACHER_KIND, unet=model.cfg.model_dump(mode="json"), T=T)
    return save_tensors(path, model.state_dict(), meta)


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> tuple[UNet, Schedule, dict]:
    """The EMA teacher in eval mode, its schedule and its sidecar metadata."""
    path = teacher_file(path)
    tensors, meta = load_tensors(path)
    if meta.get("kind") != TEACHER_KIND:
        raise ClarepsError(f"{path} is not a clareps teacher checkpoint (kind={meta.get('kind')!r})")
    model = UNet(build_config(UNetConfig, meta["unet"], f"{path} sidecar"))
    load_state(model, tensors, str(path))
    return model.to(device).eval(), Schedule.cosine(meta["T"]), meta
