"""CLI verbs for the teacher: ``train-teacher`` (``sample`` and ``canonical``: ``api/cli.py``, for any teacher)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import Field

from clareps.config import Seed, StrictModel, build_config, load_config
from clareps.errors import ClarepsError
from clareps.paths import default_teacher, preset, teacher_file

MAX_PER_CLASS = 1000  # more is a long run by mistake more often than by intent: --no-limit says it is meant
NO_LIMIT_HELP = f"allow --per-class above {MAX_PER_CLASS}"


class SamplingOptions(StrictModel):
    """The sampling options of `sample` and `teacher-check`, range-checked before any work."""

    per_class: int = Field(alias="--per-class", ge=1)
    w: float = Field(alias="--w", ge=0)
    steps: int = Field(alias="--steps", ge=1)
    seed: Seed = Field(alias="--seed")


def check_sampling(verb: str, per_class: int, w: float, steps: int, seed: int, no_limit: bool = False) -> None:
    """The options' ranges, and --per-class under its limit unless --no-limit."""
    build_config(SamplingOptions, {"--per-class": per_class, "--w": w, "--steps": steps, "--seed": seed}, verb)
    if per_class > MAX_PER_CLASS and not no_limit:
        raise ClarepsError(f"{verb}: --per-class {per_class} is above the limit of {MAX_PER_CLASS} per class; "
                           "pass --no-limit to draw that many")


def header_T(teacher: str | Path | None) -> int | None:
    """A clareps teacher file's T (or its run folder's), from the file's header before any weights are read;
    None for other teachers (a diffusers folder: its T is known once loaded)."""
    from clareps.diffusion.checkpoint import TEACHER_KIND
    from clareps.io import read_meta

    path = teacher_file(teacher or default_teacher())
    if not (path.is_file() and path.suffix == ".safetensors"):
        return None
    meta = read_meta(path)
    return meta.get("T") if meta.get("kind") == TEACHER_KIND else None


def check_steps(verb: str, steps: int, T: int | None) -> None:
    """--steps at most the teacher's T (None: not known yet)."""
    if isinstance(T, int) and not isinstance(T, bool) and steps > T:
        raise ClarepsError(f"{verb}: --steps {steps} is more than the teacher's T = {T} diffusion steps; "
                           f"use at most {T}")


def train_teacher(config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML preset"),
                  set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value"),
                  out: Path = typer.Option(Path("runs/teacher"), "--out", "-o", help="run directory"),
                  resume: bool = typer.Option(True, "--resume/--no-resume",
                                              help="continue from the run directory's last checkpoint"),
                  quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Train the class-conditional diffusion teacher."""
    from clareps.data.spec import data_fingerprint, load_data
    from clareps.diffusion.train import TeacherConfig, TeacherTrainer
    from clareps.errors import any_file, interrupt_note, kept_or_nothing
    from clareps.io import check_writable
    from clareps.paths import TEACHER_FILE
    from clareps.runs import refuse_foreign_folder

    cfg = load_config(TeacherConfig, config or preset("teacher-default"), set_)
    check_writable(out)
    refuse_foreign_folder(out, "a teacher run", markers=("config.yaml", "checkpoint.safetensors", TEACHER_FILE))
    interrupt_note(kept_or_nothing(any_file(out, "checkpoint.safetensors"), f"checkpoints so far are in {out}"))
    data = load_data(cfg.data)
    trainer = TeacherTrainer(cfg, data, out, data_fingerprint=data_fingerprint(cfg.data), quiet=quiet)
    path = trainer.train(resume=resume)
    typer.echo(f"teacher: {path}\nmetrics: {out / 'metrics.jsonl'}")


def register(app: typer.Typer) -> None:
    app.command("train-teacher")(train_teacher)
