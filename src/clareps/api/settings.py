"""Typed settings for the API: a preset (or a settings model) with keyword overrides, validated by the
stage's pydantic model. Keys may be dotted (``**{"clarid.k": 4}``) or nested dicts (``clarid={"k": 4}``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from clareps.config import build_config, override, read_yaml

M = TypeVar("M", bound=BaseModel)


def build(cls: type[M], config: M | str | Path, settings: dict[str, Any], source: str | None = None) -> M:
    """``config`` (a settings model or a YAML file) with ``settings`` on top, validated as ``cls``."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else read_yaml(config)
    return build_config(cls, override(data, settings), source or str(config if not isinstance(config, BaseModel)
                                                                   else cls.__name__))
