"""CLI verbs over ``clareps.Teacher``: ``sample`` and ``canonical``, for any teacher the loader reads."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.config import SEED_MAX, is_seed
from clareps.errors import ClarepsError
from clareps.runs import refuse_foreign_folder

TEACHER_HELP = "a clareps .safetensors (or its run folder) or a local diffusers folder (default: the shipped teacher)"
OUTPUTS = ("canonical.png", "canonical.safetensors", "canonical.json")


def sample_cmd(teacher: Optional[str] = typer.Option(None, "--teacher", "-t", help=TEACHER_HELP),
               out: Path = typer.Option(Path("runs/samples"), "--out", "-o"),
               classes: list[int] = typer.Option([], "--class", help="a class to sample (repeat it; default: all)"),
               per_class: int = typer.Option(8, "--per-class"),
               w: float = typer.Option(3.0, "--w", help="classifier-free guidance scale"),
               steps: int = typer.Option(50, "--steps", help="DDIM steps"),
               seed: int = typer.Option(0, "--seed"),
               device: str = typer.Option("auto", "--device"),
               no_limit: bool = typer.Option(False, "--no-limit", help="allow --per-class above its limit"),
               quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Draw a grid of samples per class (rows = classes) from a teacher."""
    from clareps.api.teacher import Teacher
    from clareps.diffusion.cli import check_sampling, check_steps, header_T
    from clareps.grids import save_grid
    from clareps.io import check_writable

    check_sampling("sample", per_class, w, steps, seed, no_limit)
    check_writable(out)
    refuse_foreign_folder(out, "a folder of samples", own=("samples_*.png",))
    check_steps("sample", steps, header_T(teacher))  # a clareps teacher's T, before its weights load
    t = Teacher.load(teacher, device=device)
    check_steps("sample", steps, t.schedule.T)
    rows = t.labels(classes or list(range(t.num_classes)))
    images = t.sample(rows.repeat_interleave(per_class), steps=steps, w=w, seed=seed, quiet=quiet)
    path = save_grid(images, Path(out) / f"samples_w{w:g}_seed{seed}.png", nrow=per_class)
    typer.echo(f"samples: {path}")


def canonical_cmd(teacher: Optional[str] = typer.Option(None, "--teacher", "-t", help=TEACHER_HELP),
                  class_: int = typer.Option(..., "--class", help="the class (the teacher's own label id)"),
                  n: Optional[int] = typer.Option(None, "--n", help="how many samples (default: 10, or one per image)"),
                  images: Optional[Path] = typer.Option(None, "--images", help="an image file or a folder of them: "
                                                        "canonicalize these (resized to the teacher's size) "
                                                        "instead of samples from noise"),
                  seed: int = typer.Option(0, "--seed", help="the noise (and so the samples) of the noise source"),
                  set_: list[str] = typer.Option([], "--set", "-s", help="CLARID setting: clarid.key=value "
                                                 "(over the preset for the teacher's kind)"),
                  out: Path = typer.Option(..., "--out", "-o", help="folder for canonical.png, .safetensors, .json"),
                  batch_size: Optional[int] = typer.Option(None, "--batch-size", help="items at a time (default: "
                                                           "all; fewer need less GPU memory)"),
                  device: str = typer.Option("auto", "--device")) -> None:
    """Canonical samples of one class and their guidance-only control (k = 0, the same noise), side by
    side: a PNG grid (rows: canonical, control) and a safetensors file of both, with a JSON sidecar."""
    from clareps.api.teacher import Teacher
    from clareps.io import check_writable

    if n is not None and n < 1:
        raise ClarepsError(f"--n must be at least 1, got {n}")
    if not is_seed(seed):
        raise ClarepsError(f"--seed must be a whole number from 0 to {SEED_MAX}, got {seed}")
    if batch_size is not None and batch_size < 1:
        raise ClarepsError(f"--batch-size must be at least 1, got {batch_size}")
    overrides = clarid_overrides(set_)
    check_writable(out)
    refuse_foreign_folder(out, "a canonical pair", own=OUTPUTS)
    if images is not None and not images.exists():
        raise ClarepsError(f"--images {images}: no such file or folder")
    t = Teacher.load(teacher, device=device)
    if not 0 <= class_ < t.num_classes:
        raise ClarepsError(f"--class {class_} is out of range: this teacher has classes 0..{t.num_classes - 1}")
    cfg = t.settings(**overrides)
    pixels = _images(t, images, n) if images is not None else None
    labels = [class_] * (len(pixels) if pixels is not None else n or 10)
    canon = t.canonical(labels=labels, images=pixels, seed=seed, settings=cfg, batch_size=batch_size)
    control = t.canonical(labels=labels, images=pixels, seed=seed, settings=cfg, batch_size=batch_size, k=0)
    paths = write_pair(out, canon, control)
    typer.echo(f"canonical: {paths[0]} (rows: canonical, control; {len(labels)} of class {class_})\n"
               f"samples: {paths[1]}")


def clarid_overrides(items: list[str]) -> dict:
    """``--set clarid.key=value`` items as typed CLARID settings (checked against ``ClaridConfig``)."""
    from clareps.clarid.presets import ClaridSettings
    from clareps.config import build_config, override

    bad = [item for item in items if not item.strip().startswith("clarid.")]
    if bad:
        raise ClarepsError(f"--set {bad[0]!r}: canonical takes CLARID settings only (clarid.key=value)")
    given = override({}, items).get("clarid", {})
    build_config(ClaridSettings, {"clarid": given}, "--set")  # names a bad key or value before any work
    return given


def _images(t, path: Path, n: int | None):
    from clareps.data.loaders import read_images
    from clareps.diffusion.teacher import pixel_shape

    channels, size, _ = pixel_shape(t.model)
    pixels = read_images(path, size)
    if n is not None and n > len(pixels):
        raise ClarepsError(f"--n {n} asks for more than the {len(pixels)} images in {path}")
    pixels = pixels[:n] if n is not None else pixels
    return pixels.mean(1, keepdim=True) if channels == 1 else pixels


def write_pair(out: Path, canon, control) -> tuple[Path, Path]:
    """canonical.png (rows: canonical, control) and canonical.safetensors (+ canonical.json: settings)."""
    import torch

    from clareps.grids import save_grid
    from clareps.io import save_tensors

    grid = save_grid(torch.cat([canon.images, control.images]), out / OUTPUTS[0], nrow=len(canon),
                     row_labels=["canonical", "control"])
    tensors = {f"{name}.{key}": getattr(c, key) for name, c in (("canonical", canon), ("control", control))
               for key in ("images", "features", "latents", "singular_values")}
    meta = {"kind": "clareps-canonical-pair", "labels": canon.labels.tolist(), "canonical": canon.meta,
            "control": control.meta}
    return grid, save_tensors(out / OUTPUTS[1], dict(tensors, labels=canon.labels), meta)


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_cmd)
    app.command("canonical")(canonical_cmd)
