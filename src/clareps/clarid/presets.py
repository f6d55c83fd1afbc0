"""CLARID settings by teacher kind: the one registry of which preset's ``clarid`` section serves which model.

Our U-Net takes the settings of the default bank (``bank-default``: 25 DDIM steps, engine tol 3e-2,
chosen for a 900-item bank on a CPU); a diffusers UNet2DModel and a DiT take those of their own presets
(``cifar10-diffusers-bank``, ``imagenet-dit-bank``: 50 steps, tol 1e-3). Keyword overrides go on top,
validated by ``ClaridConfig`` itself (an unknown key or a bad value is a one-line error naming it).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from clareps.adapters.loading import TeacherKind
from clareps.clarid.canonical import ClaridConfig
from clareps.config import StrictModel, build_config, override, read_yaml
from clareps.errors import ClarepsError
from clareps.paths import preset

TEACHER_PRESETS: dict[str, str] = {"clareps": "bank-default", "unet2d": "cifar10-diffusers-bank",
                                   "dit": "imagenet-dit-bank"}


class ClaridSettings(StrictModel):
    """CLARID settings under their section name, so that errors name the key as ``clarid.key``."""

    clarid: ClaridConfig = Field(default_factory=ClaridConfig)


def preset_name(kind: TeacherKind) -> str:
    if kind not in TEACHER_PRESETS:
        raise ClarepsError(f"no CLARID preset for teacher kind {kind!r} (known: {', '.join(TEACHER_PRESETS)})")
    return TEACHER_PRESETS[kind]


def clarid_preset(kind: TeacherKind) -> ClaridConfig:
    """The ``clarid`` section of the preset for this kind of teacher."""
    path = preset(preset_name(kind))
    return build_config(ClaridConfig, read_yaml(path).get("clarid") or {}, f"{path}: clarid")


def clarid_settings(base: ClaridConfig | TeacherKind, **overrides: Any) -> ClaridConfig:
    """``base`` (settings, or the kind whose preset to start from) with keyword overrides on top, e.g.
    ``clarid_settings("dit", k=0, steps=10)``. Unknown keys and bad values: a one-line error."""
    cfg = base if isinstance(base, ClaridConfig) else clarid_preset(base)
    if not overrides:
        return cfg
    return build_config(ClaridSettings, {"clarid": override(cfg.model_dump(), overrides)}, "settings").clarid


def bank_defaults(teacher: str | None) -> dict:
    """The default bank preset (``bank-default``) with the ``clarid`` section of ``teacher``'s kind (the
    shipped teacher when None): what ``bank build`` and ``Bank.build`` start from when no preset is named."""
    from clareps.adapters.loading import teacher_kind
    from clareps.paths import default_teacher

    data = read_yaml(preset("bank-default"))
    kind = teacher_kind(teacher if teacher is not None else default_teacher())
    if kind != "clareps":
        data["clarid"] = read_yaml(preset(preset_name(kind))).get("clarid") or {}
    return data
