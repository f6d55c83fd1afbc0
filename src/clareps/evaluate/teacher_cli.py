"""CLI verbs: ``train-judge`` (the reference shape classifier), ``train-mask-judge`` (the foreground
segmenter) and ``teacher-check``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.config import load_config
from clareps.device import describe_hardware, hardware
from clareps.diffusion.cli import NO_LIMIT_HELP
from clareps.errors import ClarepsError
from clareps.paths import default_judge, default_teacher, preset, teacher_file


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
    from clareps.classifiers.mask_judge import MaskJudgeConfig, train_mask_judge

    from clareps.classifiers.mask_judge import MASK_JUDGE_FILE

    _train("mask judge", MaskJudgeConfig, train_mask_judge, config or preset("mask-judge-default"), set_, out, quiet,
           MASK_JUDGE_FILE.removesuffix(".safetensors"))


def teacher_check_cmd(teacher: Optional[str] = typer.Option(None, "--teacher", "-t",
                                                    help="a clareps teacher .safetensors or its run folder"),
                      judge: Path = typer.Option(None, "--judge", "-j"),
                      per_class: int = typer.Option(100, "--per-class"),
                      w: float = typer.Option(3.0, "--w"),
                      steps: int = typer.Option(50, "--steps"),
                      seed: int = typer.Option(0, "--seed"),
                      device: str = typer.Option("auto", "--device"),
                      no_limit: bool = typer.Option(False, "--no-limit", help=NO_LIMIT_HELP),
                      quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Class consistency, judge-feature FID and inversion error; written beside the teacher."""
    from clareps.config import build_config
    from clareps.data.spec import DataSpec, load_data
    from clareps.device import resolve_device
    from clareps.adapters.loading import load_teacher_any, teacher_kind
    from clareps.diffusion.model_card import write_model_card
    from clareps.classifiers.shape_judge import load_judge
    from clareps.evaluate.teacher_check import check_teacher
    from clareps.diffusion.cli import check_sampling, check_steps, header_T
    from clareps.io import check_writable, read_yaml_or_none, write_json
    from clareps.grids import save_grid

    check_sampling("teacher-check", per_class, w, steps, seed, no_limit)
    spec = teacher or default_teacher()
    kind = teacher_kind(spec)
    if kind != "clareps":
        raise ClarepsError(f"teacher-check measures a clareps teacher against the data it was trained on, with the "
                           f"shape judge; {spec} is a diffusers {kind} model: look at it with `clareps sample` "
                           "or `clareps canonical`")
    teacher = teacher_file(spec)
    check_writable(teacher.parent)
    check_steps("teacher-check", steps, header_T(teacher))
    dev = resolve_device(device)
    model, meta = load_teacher_any(teacher, dev)
    judge_model, judge_meta = load_judge(judge or default_judge(), dev)
    run_cfg = read_yaml_or_none(teacher.parent / "config.yaml") or {}
    spec = build_config(DataSpec, run_cfg.get("data", {}), f"{teacher.parent / 'config.yaml'}: data")
    real = load_data(spec, "test-original" if spec.kind == "benchmark" else "test")
    metrics, images = check_teacher(model, judge_model, real, per_class, w, steps, seed=seed, quiet=quiet)
    metrics.update(judge=str(judge or default_judge()), judge_accuracy=judge_meta["metrics"],
                   hardware=describe_hardware(hardware(dev)),
                   teacher_step=meta.get("step"))
    write_json(teacher.parent / "teacher_check.json", metrics)
    first_ten = images.view(model.cfg.num_classes, per_class, *images.shape[1:])[:, :10]
    save_grid(first_ten.flatten(0, 1), teacher.parent / "samples.png", nrow=first_ten.shape[1])
    card = write_model_card(teacher.parent)
    typer.echo(f"class consistency {metrics['class_consistency']:.3f}, FID(judge) "
               f"{metrics['fid_judge_features']:.2f}, recon RMSE {metrics['recon_rmse']:.4f}\n"
               f"metrics: {teacher.parent / 'teacher_check.json'}\nmodel card: {card}")


def register(app: typer.Typer) -> None:
    app.command("train-judge")(train_judge_cmd)
    app.command("train-mask-judge")(train_mask_judge_cmd)
    app.command("teacher-check")(teacher_check_cmd)
