"""Where shipped models (the repository root, or $CLAREPS_HOME) and presets (the package) live."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    env = os.environ.get("CLAREPS_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[2]


TEACHER_FILE = "teacher.safetensors"


def default_cache_dir() -> Path:
    """Where built data and per-machine measurements are cached ($CLAREPS_CACHE, else ~/.cache/clareps)."""
    return Path(os.environ.get("CLAREPS_CACHE") or Path.home() / ".cache" / "clareps")


def shipped_model(folder: str, file: str, required: bool = True) -> Path:
    """``models/<folder>/<file>`` of the repository (or $CLAREPS_HOME); a one-line error when
    ``required`` and absent, e.g. from a wheel installed outside a clone."""
    path = repo_root() / "models" / folder / file
    if required and not path.is_file():
        from clareps.errors import ClarepsError

        raise ClarepsError(f"missing shipped model {path} (the shipped models live in the repository: run from a "
                           "clone, or set CLAREPS_HOME to one)")
    return path


def default_teacher() -> Path:
    return shipped_model("teacher-default", TEACHER_FILE)


def teacher_file(spec: str | Path) -> Path:
    """A clareps teacher given as its run folder (what `train-teacher --out` writes) means the file in it."""
    path = Path(spec)
    return path / TEACHER_FILE if (path / TEACHER_FILE).is_file() else path


def default_judge() -> Path:
    return shipped_model("judge-default", "judge.safetensors")


def default_mask_judge() -> Path:
    """Optional (the measures it enables are skipped without it): not checked here."""
    return shipped_model("mask-judge-default", "mask_judge.safetensors", required=False)


PACKAGE_PRESETS = Path(__file__).resolve().parent / "configs"  # package data; the repository's configs/ links here


def preset(name: str) -> Path:
    """``configs/<name>.yaml`` of $CLAREPS_HOME when it has one, else the preset shipped in the package."""
    home = os.environ.get("CLAREPS_HOME")
    if home and (Path(home) / "configs" / f"{name}.yaml").is_file():
        return Path(home) / "configs" / f"{name}.yaml"
    return PACKAGE_PRESETS / f"{name}.yaml"


def resolve_preset(config: str | None, default: str) -> Path:
    """A YAML path, or the name of a preset in configs/ (``default`` when None)."""
    from clareps.errors import ClarepsError

    if config is None:
        return preset(default)
    path = Path(config)
    if path.is_file():
        return path
    if preset(config).is_file():
        return preset(config)
    raise ClarepsError(f"config {config!r} is neither a YAML file nor a preset in {preset(config).parent}")
