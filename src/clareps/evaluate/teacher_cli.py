"""CLI verb ``teacher-check``: a clareps teacher measured against the data it was trained on, with the
shape judge (the judges' own verbs are in ``clareps.classifiers.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.device import describe_hardware, hardware
from clareps.diffusion.cli import NO_LIMIT_HELP
from clareps.errors import ClarepsError
from clareps.paths import default_judge, default_teacher, teacher_file


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
    app.command("teacher-check")(teacher_check_cmd)
