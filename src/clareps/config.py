"""Config loading: YAML presets validated by pydantic, plus ``key=value`` overrides."""

from __future__ import annotations

import copy
import difflib
import types
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from clareps.errors import ClarepsError

T = TypeVar("T", bound="StrictModel")


# YAML (files and --set values) reads a bare `null` as nothing; where "null" names the null class, keep the name
NULL_IS_A_NAME = BeforeValidator(lambda v: "null" if v is None else v)


# Every seed of every config and option: the seeds derived from it (seed * 1_000_003 + item, ...) stay within
# 64 bits, and numpy's and scikit-learn's random_state take it as it is.
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


def is_seed(value: Any) -> bool:
    """``value`` is a valid ``Seed`` (for seeds given outside a config, e.g. a list on the command line)."""
    from pydantic import TypeAdapter

    try:
        TypeAdapter(Seed).validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def _arms(annotation: Any) -> tuple:
    """The types a field's annotation admits at its top level (``int | None`` -> int, None)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _arms(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return tuple(a for arm in get_args(annotation) for a in _arms(arm))
    return (annotation,)


def _coerced(annotation: Any, value: Any) -> str | None:
    """Why pydantic would silently change ``value`` into a number of another kind (a bool into 1 or 1.0,
    a float such as 2.0 into 2), looking into lists and mappings; None when it would not."""
    arms = _arms(annotation)
    if any(a is Any or a is object for a in arms):
        return None
    if isinstance(value, bool):
        allowed = any(a is bool or (get_origin(a) is Literal and value in get_args(a)) for a in arms)
        return None if allowed or not any(a in (int, float) for a in arms) else \
            f"expected a number, got the bool {str(value).lower()}"
    if isinstance(value, float) and int in arms and float not in arms:
        return f"expected a whole number, got {value!r}"
    for arm in arms:
        origin, args = get_origin(arm), get_args(arm)
        if origin in (list, tuple, set, frozenset) and args and isinstance(value, (list, tuple)):
            for item in value:
                why = _coerced(args[0], item)
                if why:
                    return why
        if origin is dict and len(args) == 2 and isinstance(value, dict):
            for item in value.values():
                why = _coerced(args[1], item)
                if why:
                    return why
    return None


class StrictModel(BaseModel):
    """Base for every config: unknown keys, wrong types and NaN or infinite numbers are errors, and a
    bool or a float is never turned into an int (``epochs: true`` is refused, not read as 1 epoch)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_silent_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        why = _coerced(field.annotation, value) if field is not None else None
        if why:
            raise ValueError(why)
        return value


def _format_error(err: ValidationError, source: str, overrides: Iterable[str] = (), cls: type | None = None) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    if _from_overrides(first["loc"], overrides):
        source = "command line"  # the value came from --set (or an option), not from the file
    if first["type"] == "renamed_key":
        return f"{source}: {first['msg']}"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{key}'{_close_match(cls, first['loc'])}"
    msg = first["msg"].removeprefix("Value error, ")
    if key == "(root)":
        return f"{source}: {msg}"
    if first["type"] == "value_error":  # our validators' messages say what was wrong with the value
        return f"{source}: bad value for '{key}': {msg}"
    return f"{source}: bad value for '{key}': {msg} (got {first.get('input')!r})"


def _close_match(cls: type | None, loc: tuple) -> str:
    """" (did you mean 'a.b'?)" for an unknown key at ``loc`` of model ``cls`` that is close to a known one."""
    for part in loc[:-1]:  # down the nested models to the section that holds the key
        field = cls.model_fields.get(str(part)) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        arms = [a for a in _arms(field.annotation) if isinstance(a, type)] if field is not None else []
        cls = next((a for a in arms if issubclass(a, BaseModel)), None)
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        return ""
    near = difflib.get_close_matches(str(loc[-1]), list(cls.model_fields), n=1)
    return f" (did you mean '{'.'.join([*map(str, loc[:-1]), near[0]])}'?)" if near else ""


def renamed(data: Any, names: dict[str, str], section: str) -> Any:
    """A ``mode="before"`` check for a model whose keys were renamed: an old key is a one-line error that
    names the new one ("loss.lambda_dist is now loss.weights.cka")."""
    if isinstance(data, dict):
        for old, new in names.items():
            if old in data:
                raise PydanticCustomError("renamed_key", "{old} is now {new}",
                                          {"old": f"{section}.{old}", "new": f"{section}.{new}"})
    return data


def _from_overrides(loc: tuple, overrides: Iterable[str]) -> bool:
    """The error at ``loc`` is in (or above, or below) a key one of ``overrides`` set."""
    where = [str(p) for p in loc]
    for item in overrides:
        parts = item.split("=", 1)[0].strip().split(".")
        if where and (parts[:len(where)] == where or where[:len(parts)] == parts):
            return True
    return False


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ClarepsError(f"config file not found: {path}")
    if not path.is_file():
        raise ClarepsError(f"config file {path} is a folder, not a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ClarepsError(f"config file {path} is not text (not UTF-8): give a YAML file") from None
    except OSError as exc:
        raise ClarepsError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ClarepsError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ClarepsError(f"config file {path} must hold a mapping at the top level")
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


def build_config(cls: type[T], data: dict, source: str = "config", overrides: list[str] = ()) -> T:
    """``data`` validated as ``cls``; a one-line error names ``source``, or the command line when the bad
    key is one of ``overrides`` (the ``key=value`` items applied to ``data``)."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ClarepsError(_format_error(err, source, overrides, cls)) from None


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    data = read_yaml(path) if path is not None else {}
    data = override(data, overrides or [])
    return build_config(cls, data, str(path) if path is not None else "config", overrides or [])


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


def override(data: dict, settings: dict[str, Any] | Iterable[str]) -> dict:
    """The one override path (CLI ``--set``, sweeps, API keywords, the demo's sections): a deep copy of
    ``data`` with ``settings`` set into it. ``settings`` is a dict of typed values (``{"clarid.k": 4}``, or
    ``{"clarid": {"k": 4}}``) or ``key=value`` strings whose values are read as YAML (``["clarid.k=4"]``).
    Dotted keys reach nested sections; an unset (null) section is filled in key by key; a dict value is
    merged into the section it names; any other value replaces what was there."""
    out = copy.deepcopy(data)
    pairs = settings.items() if isinstance(settings, dict) else [_parsed(item) for item in settings]
    for key, value in pairs:
        parts = str(key).strip().split(".")
        if not all(part.strip() for part in parts):
            raise ClarepsError(f"setting {key!r} names no key: give it as key.sub=value")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ClarepsError(f"setting {key!r}: '{part}' is not a section")
            node = child
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        last = parts[-1]
        node[last] = override(node[last], value) if isinstance(value, dict) and isinstance(node.get(last), dict) \
            else copy.deepcopy(value)
    return out


def _parsed(item: str) -> tuple[str, Any]:
    """``"a.b=value"`` as ``("a.b", value)``, the value read as YAML (a string where it is not YAML)."""
    if "=" not in item:
        raise ClarepsError(f"override {item!r} must look like key=value")
    key, raw = item.split("=", 1)
    if not all(part.strip() for part in key.split(".")):
        raise ClarepsError(f"override {item!r} names no key: give it as key.sub=value")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw
