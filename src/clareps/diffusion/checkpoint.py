"""Saving and loading the teacher (EMA weights + config) and full training state."""

from __future__ import annotations

from pathlib import Path

import torch

from clareps.config import build_config
from clareps.diffusion.schedule import Schedule
from clareps.diffusion.teacher import schedule_of
from clareps.diffusion.unet import UNet, UNetConfig
from clareps.errors import ClarepsError
from clareps.io import load_tensors, save_tensors
from clareps.state import load_state
from clareps.paths import teacher_file

TEACHER_KIND = "clareps-teacher"


def save_teacher(path: str | Path, model: UNet, meta: dict) -> Path:
    """The weights, the U-Net's config and the length T of its schedule (a cosine one: T says it all)."""
    schedule = schedule_of(model)
    if not torch.equal(schedule.alpha_bar, Schedule.cosine(schedule.T).alpha_bar):
        raise ClarepsError("a clareps teacher file keeps a cosine schedule (its length T); this U-Net has another")
    meta = dict(meta, kind=TEACHER_KIND, unet=model.cfg.model_dump(mode="json"), T=schedule.T)
    return save_tensors(path, model.state_dict(), meta)


def read_teacher_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[UNet, dict]:
    """The format reader of a clareps teacher file: the EMA U-Net in eval mode, carrying its schedule, and
    its metadata. Load teachers with ``clareps.adapters.load_teacher_any`` (every format, one loader)."""
    path = teacher_file(path)
    tensors, meta = load_tensors(path)
    if meta.get("kind") != TEACHER_KIND:
        raise ClarepsError(f"{path} is not a clareps teacher checkpoint (kind={meta.get('kind')!r})")
    model = UNet(build_config(UNetConfig, meta["unet"], f"{path} sidecar"), Schedule.cosine(meta["T"]))
    load_state(model, tensors, str(path))
    return model.to(device).eval(), meta
