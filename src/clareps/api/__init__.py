"""clareps from Python: objects that own their work, each the same code path as its CLI verb.

    import clareps
    teacher = clareps.Teacher.load()                       # the shipped teacher; or a path (see Teacher.load)
    canon = teacher.canonical(labels=[3] * 10)             # 10 canonical samples of class 3 from noise
    control = teacher.canonical(labels=[3] * 10, k=0)      # the guidance-only control (same noise)
    canon.grid("class3.png"); canon.save("class3.safetensors")
    bank = clareps.Bank.build("runs/py/bank", per_class=5)
    student = clareps.Student.train("cadistill", "runs/py/cadistill-s0", bank=bank)
    print(student.evaluate(mode="fast").to_markdown())

CLARID settings default to the preset for the teacher's kind (``clarid/presets.py``) and take keyword
overrides validated by ``ClaridConfig``; the stage objects take their preset's keys as keywords. Errors
are ``ClarepsError`` with a one-line message. The functions below are shortcuts over the objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clareps.api.bank import Bank, BankComparison
from clareps.api.canonical import Canonical
from clareps.api.student import Evaluation, Student
from clareps.api.teacher import Teacher
from clareps.clarid.canonical import ClaridConfig

__all__ = ["Teacher", "Canonical", "Bank", "BankComparison", "Student", "Evaluation", "ClaridConfig",
           "load_teacher", "canonical_samples", "canonicalize_images", "build_bank", "distill_student",
           "evaluate_student", "save_grid"]


def load_teacher(path: str | Path | None = None, device: str = "auto", classes: list[int] | None = None) -> Teacher:
    """``Teacher.load``."""
    return Teacher.load(path, device=device, classes=classes)


def canonical_samples(teacher: Teacher, per_class: int = 4, seed: int = 0, labels: list[int] | None = None,
                      **clarid: Any) -> Canonical:
    """``teacher.canonical`` from noise: ``labels`` (default: ``per_class`` of every class, in class order)."""
    return teacher.canonical(labels=_per_class(teacher, per_class) if labels is None else labels, seed=seed, **clarid)


def canonicalize_images(teacher: Teacher, images: torch.Tensor, labels: torch.Tensor, **clarid: Any) -> Canonical:
    """``teacher.canonical`` of given images (N, C, H, W) in [0, 1] of classes ``labels``."""
    return teacher.canonical(labels=labels, images=images, **clarid)


def build_bank(out: str | Path, config: str | Path | None = None, quiet: bool = True, **settings: Any) -> Bank:
    """``Bank.build``."""
    return Bank.build(out, config, quiet=quiet, **settings)


def distill_student(method: str, out: str | Path, bank: str | Path | None = None, seed: int = 0,
                    config: str | Path | None = None, quiet: bool = True, **settings: Any) -> Path:
    """``Student.train``; returns the student file."""
    return Student.train(method, out, bank=bank, seed=seed, config=config, quiet=quiet, **settings).path


def evaluate_student(student: str | Path, mode: str = "fast", config: str | Path | None = None,
                     quiet: bool = True, **settings: Any) -> dict:
    """``Student.load(student).evaluate(mode)``; returns the whole results document."""
    return Student.load(student).evaluate(mode, config=config, quiet=quiet, **settings).results


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 10) -> Path:
    """Write images (N, C, H, W) in [0, 1] as a PNG grid, ``nrow`` a row."""
    from clareps.grids import save_grid as grid

    return grid(images, path, nrow=nrow)


def _per_class(teacher: Teacher, per_class: int) -> torch.Tensor:
    from clareps.errors import ClarepsError

    if per_class < 1:
        raise ClarepsError(f"per_class must be >= 1, got {per_class}")
    return torch.arange(teacher.num_classes).repeat_interleave(per_class)
