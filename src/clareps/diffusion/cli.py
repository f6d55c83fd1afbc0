"""CLI verbs for the teacher: ``train-teacher`` and ``sample``."""

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


def check_steps(verb: str, steps: int, teacher: str | Path) -> None:
    """--steps at most the teacher's T, read from the file's header before the weights are loaded."""
    from clareps.io import read_meta

    T = read_meta(teacher_file(teacher)).get("T")
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


def sample_cmd(teacher: Path = typer.Option(None, "--teacher", "-t", help="teacher .safetensors"),
               out: Path = typer.Option(Path("runs/samples"), "--out", "-o"),
               per_class: int = typer.Option(8, "--per-class"),
               w: float = typer.Option(3.0, "--w", help="classifier-free guidance scale"),
               steps: int = typer.Option(50, "--steps", help="DDIM steps"),
               seed: int = typer.Option(0, "--seed"),
               device: str = typer.Option("auto", "--device"),
               no_limit: bool = typer.Option(False, "--no-limit", help=NO_LIMIT_HELP),
               quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Draw a grid of samples per class (rows = classes) from a teacher."""
    from clareps.device import resolve_device
    from clareps.diffusion.checkpoint import load_teacher
    from clareps.diffusion.sampler import sample_per_class
    from clareps.io import check_writable
    from clareps.grids import save_grid
    from clareps.runs import refuse_foreign_folder

    check_sampling("sample", per_class, w, steps, seed, no_limit)
    check_writable(out)
    refuse_foreign_folder(out, "a folder of samples", own=("samples_*.png",))
    teacher = teacher or default_teacher()
    check_steps("sample", steps, teacher)
    model, meta = load_teacher(teacher, resolve_device(device))
    images, _ = sample_per_class(model, model.cfg.num_classes, per_class, w, steps, seed, quiet=quiet)
    path = save_grid(images, Path(out) / f"samples_w{w:g}_seed{seed}.png", nrow=per_class)
    typer.echo(f"samples: {path}")


def register(app: typer.Typer) -> None:
    app.command("train-teacher")(train_teacher)
    app.command("sample")(sample_cmd)
