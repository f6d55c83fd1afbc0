"""CLI verbs: ``distill`` (train a student with one of the five methods) and ``train-kd-teacher``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.paths import resolve_preset
from clareps.runs import refuse_foreign_folder

DEFAULT_PRESET = "distill-default"


def _preset_path(config: Optional[str]) -> Path:
    return resolve_preset(config, DEFAULT_PRESET)


def holds_distill_run(out: Path) -> bool:
    """The folder's record (config.yaml, written before the first checkpoint) is a distill run's."""
    from clareps.io import read_yaml_or_none

    record = read_yaml_or_none(out / "config.yaml") or {}
    return "method" in record and "student" in record


def _load(config: Optional[str], overrides: list[str]):
    from clareps.config import load_config
    from clareps.distill.config import DistillConfig

    return load_config(DistillConfig, _preset_path(config), overrides)


def distill_cmd(method: Optional[str] = typer.Option(None, "--method", "-m",
                                                     help="ce | feat-real | control | kd | cadistill | cadistill-oracle | ce-oracle"),
                seed: Optional[int] = typer.Option(None, "--seed"),
                bank: Optional[Path] = typer.Option(None, "--bank", "-b", help="bank folder (bank.safetensors)"),
                config: Optional[str] = typer.Option(None, "--config", "-c", help="preset name or YAML path"),
                set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value"),
                out: Optional[Path] = typer.Option(None, "--out", "-o",
                                                   help="run directory (default runs/distill/<method>-s<seed>)"),
                teacher: Optional[Path] = typer.Option(None, "--teacher", "-t", help="the teacher (.safetensors or "
                                                       "diffusers folder) the bank must have been built with"),
                kd_teacher: Optional[Path] = typer.Option(None, "--kd-teacher",
                                                          help="classifier teacher for --method kd"),
                test: list[str] = typer.Option([], "--test",
                                               help="NAME=TEST.npz: a test file scored at the end (repeatable)"),
                resume: bool = typer.Option(True, "--resume/--no-resume",
                                            help="continue from the run directory's last checkpoint"),
                quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Distil into a student: CaDistill or one of its baselines, same student and budget."""
    from clareps.adapters.loading import teacher_fingerprint
    from clareps.config import named_files
    from clareps.distill.trainer import DistillTrainer
    from clareps.errors import any_file, interrupt_note, kept_or_nothing
    from clareps.io import check_writable

    overrides = list(set_)
    overrides += [f"method={method}"] if method is not None else []
    overrides += [f"seed={seed}"] if seed is not None else []
    overrides += [f"bank={bank}"] if bank is not None else []
    overrides += [f"kd.teacher={kd_teacher}"] if kd_teacher is not None else []
    tests = named_files("--test", test)  # test files by name replace the preset's test splits
    overrides += ["test_splits=[]"] + [f"test_data.{name}={path}" for name, path in tests.items()] if tests else []
    if teacher is not None:
        overrides.append(f"expect_teacher={teacher_fingerprint(str(teacher))}")
    cfg = _load(config, overrides)
    out = out or Path("runs/distill") / f"{cfg.method}-s{cfg.seed}"
    check_writable(out)
    refuse_foreign_folder(out, "a distill run", ours=holds_distill_run(out))
    interrupt_note(kept_or_nothing(any_file(out, "checkpoint.safetensors"), f"the last checkpoint is in {out}"))
    trainer = DistillTrainer(cfg, out, quiet=quiet)
    result = trainer.train(resume=resume)
    if not result:
        typer.echo(f"stopped at step {trainer.step} of {trainer.total_steps}; rerun to resume\n"
                   f"checkpoint: {trainer.ckpt_path}")
    else:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if "acc" in k and v is not None)
        note = " (complete run with this config found: reused)" if trainer.reused else ""
        typer.echo(f"{cfg.method} seed {cfg.seed}: {scores}{note}\nstudent: {trainer.student_path}")
    typer.echo(f"metrics: {out / 'metrics.jsonl'}")


def train_kd_teacher_cmd(config: Optional[str] = typer.Option(None, "--config", "-c",
                                                              help="the distill preset (name or YAML path)"),
                         set_: list[str] = typer.Option([], "--set", "-s", help="override: key.sub=value"),
                         out: Path = typer.Option(Path("runs/distill/kd-teacher"), "--out", "-o"),
                         quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Train the classifier teacher for ``distill --method kd`` on the students' training split."""
    from clareps.distill.methods import KDTeacherConfig, train_kd_teacher
    from clareps.io import check_writable

    cfg = _load(config, list(set_))
    tcfg = KDTeacherConfig.from_distill(cfg)
    check_writable(out)
    refuse_foreign_folder(out, "a KD teacher", markers=("kd_teacher.safetensors",),
                          own=("kd_teacher.json", "timing.json"))
    path, metrics = train_kd_teacher(tcfg, out, quiet=quiet)
    preset = f" -c {config}" if config is not None else ""
    typer.echo(f"kd teacher: {path}\n{metrics}\nuse it with: clareps distill{preset} --method kd --kd-teacher {path}")


def register(app: typer.Typer) -> None:
    app.command("distill")(distill_cmd)
    app.command("train-kd-teacher")(train_kd_teacher_cmd)
