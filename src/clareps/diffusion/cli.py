"""CLI verbs for the teacher: ``train-teacher`` (``sample`` and ``canonical``: ``api/cli.py``, for any teacher)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import Field

from clareps.config import StrictModel, build_config, load_config
from clareps.paths import preset


class SamplingOptions(StrictModel):
    """The sampling options of `sample` and `teacher-check`, range-checked before any work."""

    per_class: int = Field(alias="--per-class", ge=1)
    w: float = Field(alias="--w", ge=0)
    steps: int = Field(alias="--steps", ge=1)
    seed: int = Field(alias="--seed", ge=0)


def check_sampling(verb: str, per_class: int, w: float, steps: int, seed: int) -> None:
    build_config(SamplingOptions, {"--per-class": per_class, "--w": w, "--steps": steps, "--seed": seed}, verb)


def train_teacher(config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML preset"),
                  set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value"),
                  out: Path = typer.Option(Path("runs/teacher"), "--out", "-o", help="run directory"),
                  resume: bool = typer.Option(True, "--resume/--no-resume",
                                              help="continue from the run directory's last checkpoint"),
                  quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Train the class-conditional diffusion teacher."""
    from clareps.data.spec import data_fingerprint, load_data
    from clareps.diffusion.train import TeacherConfig, TeacherTrainer
    from clareps.errors import interrupt_note
    from clareps.io import check_writable

    cfg = load_config(TeacherConfig, config or preset("teacher-default"), set_)
    check_writable(out)
    interrupt_note(f"checkpoints so far are in {out}; rerun the same command to resume")
    data = load_data(cfg.data)
    trainer = TeacherTrainer(cfg, data, out, data_fingerprint=data_fingerprint(cfg.data), quiet=quiet)
    path = trainer.train(resume=resume)
    typer.echo(f"teacher: {path}\nmetrics: {out / 'metrics.jsonl'}")


def register(app: typer.Typer) -> None:
    app.command("train-teacher")(train_teacher)
