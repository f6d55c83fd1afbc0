"""Config loading: YAML presets validated by pydantic, plus ``key=value`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from clareps.errors import ClarepsError

T = TypeVar("T", bound="StrictModel")


# YAML (files and --set values) reads a bare `null` as nothing; where "null" names the null class, keep the name
NULL_IS_A_NAME = BeforeValidator(lambda v: "null" if v is None else v)


class StrictModel(BaseModel):
    """Base for every config: unknown keys, wrong types and NaN or infinite numbers are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{key}'"
    msg = first["msg"].removeprefix("Value error, ")
    if key == "(root)":
        return f"{source}: {msg}"
    if first["type"] == "value_error":  # our validators' messages say what was wrong with the value
        return f"{source}: bad value for '{key}': {msg}"
    return f"{source}: bad value for '{key}': {msg} (got {first.get('input')!r})"


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ClarepsError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ClarepsError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ClarepsError(f"config file {path} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict copy."""
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ClarepsError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:  # an unset (null) section is filled in key by key
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ClarepsError(f"override {item!r}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def named_files(option: str, items: list[str]) -> dict[str, str]:
    """Repeated ``NAME=PATH`` options as a dict, or a one-line error naming the option."""
    out = {}
    for item in items:
        name, _, path = item.partition("=")
        if not name.strip() or not path.strip() or "." in name:
            raise ClarepsError(f"bad {option} {item!r}: expected NAME=PATH (a name without dots)")
        out[name.strip()] = path.strip()
    return out


def build_config(cls: type[T], data: dict, source: str = "config") -> T:
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ClarepsError(_format_error(err, source)) from None


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return build_config(cls, data, str(path) if path is not None else "config")


def to_plain(cfg: BaseModel) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def _flat(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing_keys(stored: dict, given: dict, limit: int = 4) -> str:
    """'key: stored there, given here' for the keys where two plain configs differ (a refusal's why)."""
    a, b = _flat(stored), _flat(given)
    keys = [k for k in sorted(set(a) | set(b)) if k != "config_hash" and a.get(k) != b.get(k)]
    text = ", ".join(f"{k}: {a.get(k)!r} there, {b.get(k)!r} here" for k in keys[:limit])
    return (text + (f", and {len(keys) - limit} more" if len(keys) > limit else "")) or "a different hash"
