"""Typed settings for the API: a preset (or a settings model) with keyword overrides, validated by the
stage's pydantic model. Keys may be dotted (``**{"clarid.k": 4}``) or nested dicts (``clarid={"k": 4}``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from clareps.config import build_config, read_yaml

M = TypeVar("M", bound=BaseModel)


def merge(data: dict, settings: dict[str, Any]) -> dict:
    """A deep copy of ``data`` with ``settings`` set into it (dotted keys reach nested sections; a dict
    value is merged into the section it names)."""
    out = copy.deepcopy(data)
    for key, value in settings.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):  # an unset (null) section is filled in key by key
                child = node[part] = {}
            node = child
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last] = merge(node[last], value)
        else:
            node[last] = value
    return out


def build(cls: type[M], config: M | str | Path, settings: dict[str, Any], source: str | None = None) -> M:
    """``config`` (a settings model or a YAML file) with ``settings`` on top, validated as ``cls``."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else read_yaml(config)
    return build_config(cls, merge(data, settings), source or str(config if not isinstance(config, BaseModel)
                                                                   else cls.__name__))
