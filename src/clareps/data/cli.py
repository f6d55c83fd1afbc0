"""`clareps data ...`: build the benchmark and look at it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clareps.config import load_config
from clareps.data.benchmark import (SPLITS, BenchmarkConfig, build_benchmark, default_cache_dir, fingerprint,
                                    load_split)
from clareps.errors import interrupt_note
from clareps.io import check_writable
from clareps.paths import preset
from clareps.runs import refuse_foreign_folder
from clareps.grids import save_grid

ConfigOpt = typer.Option(None, "--config", help="YAML preset (default: the shipped configs/data-default.yaml)")
SetOpt = typer.Option(None, "--set", help="override a config key: key=value (repeatable)")
CacheOpt = typer.Option(None, "--cache-dir", help="where builds go (default: $CLAREPS_CACHE or ~/.cache/clareps)")
QuietOpt = typer.Option(False, "--quiet", help="no progress bar")


def _config(config: Optional[Path], overrides: Optional[list[str]]) -> BenchmarkConfig:
    if config is None and preset("data-default").exists():
        config = preset("data-default")
    return load_config(BenchmarkConfig, config, overrides or [])


def _prepare(cfg: BenchmarkConfig, cache_dir: Optional[Path]) -> None:
    cache = Path(cache_dir or default_cache_dir())
    if not (cache / f"animals-{fingerprint(cfg)}" / "meta.json").exists():  # a finished build is only read
        check_writable(cache)
    interrupt_note("nothing partial is kept (a build writes its splits at the end); rerun the same command")


def build(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    cache_dir: Optional[Path] = CacheOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Build every split of the benchmark (reused when already built) and print its folder."""
    cfg = _config(config, set_)
    _prepare(cfg, cache_dir)
    folder = build_benchmark(cfg, cache_dir, progress=not quiet)
    typer.echo(str(folder))


def show(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    cache_dir: Optional[Path] = CacheOpt,
    out: Path = typer.Option(Path("runs/data-show"), "--out", help="folder for the PNG grids"),
    per_class: int = typer.Option(8, "--per-class", min=1, help="images per class (grid columns)"),
    quiet: bool = QuietOpt,
) -> None:
    """Write one PNG grid per split (a row per class) and print their paths."""
    cfg = _config(config, set_)
    _prepare(cfg, cache_dir)
    check_writable(out)
    refuse_foreign_folder(out, "a folder of data grids", own=tuple(f"{split}.png" for split in SPLITS))
    folder = build_benchmark(cfg, cache_dir, progress=not quiet)
    for split in SPLITS:
        data = load_split(folder, split).per_class(per_class, seed=0)
        path = save_grid(data.images, out / f"{split}.png", nrow=per_class, row_labels=data.class_names)
        typer.echo(str(path))


def register(data: typer.Typer) -> None:
    data.command("build")(build)
    data.command("show")(show)
