"""CLI verbs of the judges: ``train-judge`` (the reference shape classifier) and ``train-mask-judge``
(the foreground segmenter)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.config import load_config
from clareps.paths import preset


def train_judge_cmd(config: Optional[Path] = typer.Option(None, "--config", "-c"),
                    set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value"),
                    out: Path = typer.Option(Path("runs/judge"), "--out", "-o"),
                    quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Train the shape judge on foregrounds over random backgrounds (no spurious cue)."""
    from clareps.classifiers.shape_judge import JudgeConfig, train_judge

    _train("judge", JudgeConfig, train_judge, config or preset("judge-default"), set_, out, quiet, "judge")


def _train(what: str, config_cls, train, config: Path, set_: list[str], out: Path, quiet: bool, file: str) -> None:
    from clareps.io import check_writable
    from clareps.runs import refuse_foreign_folder

    cfg = load_config(config_cls, config, set_)
    check_writable(out)
    refuse_foreign_folder(out, f"a {what}", markers=(f"{file}.safetensors",),
                          own=(f"{file}.json", "timing.json"))
    path, metrics = train(cfg, out, quiet=quiet)
    typer.echo(f"{what}: {path}\n{metrics}")


def train_mask_judge_cmd(config: Optional[Path] = typer.Option(None, "--config", "-c"),
                         set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value"),
                         out: Path = typer.Option(Path("runs/mask-judge"), "--out", "-o"),
                         quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Train the mask judge (foreground segmentation) on the training split's known masks."""
    from clareps.classifiers.mask_judge import MASK_JUDGE_FILE, MaskJudgeConfig, train_mask_judge

    _train("mask judge", MaskJudgeConfig, train_mask_judge, config or preset("mask-judge-default"), set_, out, quiet,
           MASK_JUDGE_FILE.removesuffix(".safetensors"))


def register(app: typer.Typer) -> None:
    app.command("train-judge")(train_judge_cmd)
    app.command("train-mask-judge")(train_mask_judge_cmd)
