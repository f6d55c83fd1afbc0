"""Device selection: ``auto`` picks CUDA when present, else CPU."""

from __future__ import annotations

import torch

from clareps.errors import ClarepsError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ClarepsError(f"device {name!r} asked for, but CUDA is not available here")
    if name != "cpu" and not name.startswith("cuda"):
        raise ClarepsError(f"unknown device {name!r}: use auto, cpu or cuda[:N]")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU or CUDA when ``precision == 'bf16'``; a no-op context for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
