"""``clareps demo``: the main job on the default data.

Today it builds the default benchmark, draws a grid of it, and samples a grid of
each class from the shipped teacher; the end-to-end pipeline (bank, students,
evaluation, report) joins it as those stages land.
"""

from __future__ import annotations

from pathlib import Path

import typer

from clareps.paths import default_teacher


def demo(out: Path = typer.Option(Path("runs/demo"), "--out", "-o"),
         w: float = typer.Option(3.0, "--w", help="classifier-free guidance scale"),
         per_class: int = typer.Option(10, "--per-class"),
         device: str = typer.Option("auto", "--device"),
         quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Build the default data, then draw per-class samples from the shipped teacher."""
    from clareps.config import build_config
    from clareps.data.spec import DataSpec, load_data
    from clareps.device import resolve_device
    from clareps.diffusion.checkpoint import load_teacher
    from clareps.evaluate.teacher_check import sample_per_class
    from clareps.io import read_yaml_or_none
    from clareps.report.grid import save_grid

    teacher = default_teacher()
    model, sched, _ = load_teacher(teacher, resolve_device(device))
    spec = build_config(DataSpec, (read_yaml_or_none(teacher.parent / "config.yaml") or {}).get("data", {}))
    real = load_data(spec).per_class(per_class, seed=0)
    data_png = save_grid(real.images, out / "data_train.png", nrow=per_class, row_labels=real.class_names)
    images, _ = sample_per_class(model, sched, model.cfg.num_classes, per_class, w, 50, seed=0, quiet=quiet)
    samples_png = save_grid(images, out / f"teacher_samples_w{w:g}.png", nrow=per_class,
                            row_labels=real.class_names)
    typer.echo(f"training images: {data_png}\nteacher samples: {samples_png}\n"
               f"teacher model card: {teacher.parent / 'MODEL_CARD.md'}")
